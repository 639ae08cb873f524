//! The LinkedIn adapter against the sandbox's LinkedIn twin over real HTTP: connect (member and
//! organisations), refresh, text/article/image/multi-image/document/poll/video posts, a resumed video
//! upload,
//! reconciliation, and the failure classes the publisher relies on.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use herald_domain::connection::AccountProfile;
use herald_domain::{ErrorClass, MediaItem, MediaKind, Poll, PublishOptions};
use herald_infrastructure::media_source::MediaUrlPolicy;
use herald_infrastructure::platforms::linkedin::{LinkedInAdapter, LinkedInConfig};
use herald_infrastructure::platforms::{
    ConnectedAccount, CreatedPost, MediaUpload, PlatformAdapter, PostDraft, PostError,
    RateLimitGate, TokenGrant, UploadProgress, UploadResume,
};
use herald_infrastructure::secret::Secret;
use herald_sandbox::{Fault, LinkedInEndpoint, Sandbox, SandboxConfig};
use url::Url;

const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// One connection: the account it publishes as and the grant Herald's vault holds for it.
#[derive(Debug, Clone)]
struct Conn {
    account: AccountProfile,
    grant: TokenGrant,
}

impl std::ops::Deref for Conn {
    type Target = TokenGrant;

    fn deref(&self) -> &TokenGrant {
        &self.grant
    }
}

impl Conn {
    /// `draft` published as this connection's account.
    fn draft(&self, draft: &PostDraft) -> PostDraft {
        PostDraft {
            account: self.account.clone(),
            ..draft.clone()
        }
    }

    /// The same account with the grant a refresh returned.
    fn with(&self, grant: TokenGrant) -> Conn {
        Conn {
            account: self.account.clone(),
            grant,
        }
    }
}

struct Env {
    sandbox: Sandbox,
    adapter: LinkedInAdapter,
}

impl Env {
    async fn start() -> Self {
        Self::start_with(|_| {}, |_| {}).await
    }

    async fn start_with(
        sandbox: impl FnOnce(&mut herald_sandbox::LinkedInConfig),
        adapter: impl FnOnce(&mut LinkedInConfig),
    ) -> Self {
        let mut sandbox_config = SandboxConfig::default();
        sandbox_config.linkedin.video_part_size = 100_000;
        sandbox_config.linkedin.video_min_bytes = 1;
        sandbox_config.linkedin.video_processing_delay = Duration::from_millis(300);
        sandbox(&mut sandbox_config.linkedin);
        let defaults = sandbox_config.linkedin.clone();
        let sandbox = Sandbox::start("127.0.0.1:0", sandbox_config)
            .await
            .expect("sandbox starts");
        let mut config = LinkedInConfig::for_base(
            Url::parse(&sandbox.linkedin_base_url()).unwrap(),
            defaults.client_id,
            Secret::new(defaults.client_secret),
        );
        config.version = Utc::now().format("%Y%m").to_string();
        config.request_timeout = Duration::from_secs(1);
        config.status_poll_interval = Duration::from_millis(50);
        config.throttle_backoff = Duration::from_secs(90);
        // The sandbox serves the sample media on loopback.
        config.media_policy = MediaUrlPolicy::new(true, "");
        adapter(&mut config);
        Self {
            adapter: LinkedInAdapter::new(config).expect("adapter builds"),
            sandbox,
        }
    }

    /// Authorize URL → consent (302) → code exchange.
    async fn login(&self, user: &str) -> TokenGrant {
        let start = self.adapter.authorization_url(REDIRECT);
        let query: HashMap<String, String> = start.url.query_pairs().into_owned().collect();
        assert_eq!(query["state"], start.state);
        assert!(!query.contains_key("code_challenge"), "no PKCE");
        assert!(query["scope"]
            .split(' ')
            .any(|s| s == "w_organization_social"));
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let consent = browser
            .get(format!("{}&sandbox_user={user}", start.url))
            .send()
            .await
            .unwrap();
        assert_eq!(consent.status(), 302, "authorize must redirect");
        let location = consent.headers()["location"].to_str().unwrap();
        let callback: HashMap<String, String> = Url::parse(location)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        assert_eq!(callback["state"], start.state);
        self.adapter
            .exchange_code(&callback["code"], &start.pkce_verifier, REDIRECT)
            .await
            .expect("code exchange succeeds")
    }

    /// The login's connections: the member first, then organisations, all with the login's
    /// grant (as the callback stores them).
    async fn connect(&self, user: &str) -> Vec<Conn> {
        let grant = self.login(user).await;
        let accounts: Vec<ConnectedAccount> =
            self.adapter.accounts(&grant).await.expect("accounts");
        accounts
            .into_iter()
            .map(|a| Conn {
                grant: a.grant.unwrap_or_else(|| grant.clone()),
                account: a.profile,
            })
            .collect()
    }

    /// The member's connection.
    async fn member(&self, user: &str) -> Conn {
        self.connect(user).await.remove(0)
    }

    fn media_url(&self, name: &str, bytes: usize) -> String {
        format!("{}/media/{name}?bytes={bytes}", self.sandbox.base_url())
    }

    async fn upload(
        &self,
        grant: &Conn,
        item: &MediaItem,
        resume: Option<&UploadResume>,
        progress: &Progress<'_>,
    ) -> Result<String, herald_domain::PlatformFailure> {
        let post = grant.draft(&PostDraft::default());
        let upload = MediaUpload {
            resume,
            ..MediaUpload::single(item, &post)
        };
        self.adapter
            .upload_media(&grant.access_token, &upload, &Gate::default(), progress)
            .await
    }

    async fn post(&self, grant: &Conn, draft: &PostDraft) -> Result<CreatedPost, PostError> {
        self.adapter
            .create_post(&grant.access_token, &grant.draft(draft), &Gate::default())
            .await
    }

    fn fault(&self, endpoint: LinkedInEndpoint, fault: Fault) {
        self.sandbox.inject_linkedin_fault(endpoint, fault, 1);
    }
}

fn image(url: String) -> MediaItem {
    MediaItem {
        url,
        kind: MediaKind::Image,
        mime_type: "image/png".into(),
        probe: None,
    }
}

fn video(url: String) -> MediaItem {
    MediaItem {
        url,
        kind: MediaKind::Video,
        mime_type: "video/mp4".into(),
        probe: None,
    }
}

fn text(t: &str) -> PostDraft {
    PostDraft {
        text: t.to_owned(),
        ..PostDraft::default()
    }
}

fn failure(result: Result<CreatedPost, PostError>) -> herald_domain::PlatformFailure {
    match result {
        Err(PostError::Failed(f)) => f,
        other => panic!("expected a failure, got {other:?}"),
    }
}

type Observation = (String, Option<u64>, Option<DateTime<Utc>>);

#[derive(Default)]
struct Gate {
    observed: Mutex<Vec<Observation>>,
}

#[async_trait::async_trait]
impl RateLimitGate for Gate {
    async fn acquire(&self, _endpoint: &str) -> Result<(), DateTime<Utc>> {
        Ok(())
    }

    async fn observe(&self, endpoint: &str, remaining: Option<u64>, reset: Option<DateTime<Utc>>) {
        self.observed
            .lock()
            .unwrap()
            .push((endpoint.to_owned(), remaining, reset));
    }
}

type OnChunk<'a> = Box<dyn Fn(usize) + Send + Sync + 'a>;

#[derive(Default)]
struct Progress<'a> {
    started: Mutex<Vec<u64>>,
    sessions: Mutex<Vec<Secret>>,
    chunks: Mutex<Vec<u64>>,
    /// Called with the number of parts confirmed so far, before the next part is sent.
    on_chunk: Option<OnChunk<'a>>,
}

#[async_trait::async_trait]
impl UploadProgress for Progress<'_> {
    async fn started(&self, total_bytes: u64) {
        self.started.lock().unwrap().push(total_bytes);
    }

    async fn session_opened(&self, session: &Secret) {
        self.sessions.lock().unwrap().push(session.clone());
    }

    async fn chunk_sent(&self, bytes_sent: u64, _total_bytes: u64) {
        let count = {
            let mut chunks = self.chunks.lock().unwrap();
            chunks.push(bytes_sent);
            chunks.len()
        };
        if let Some(hook) = &self.on_chunk {
            hook(count);
        }
    }
}

#[tokio::test]
async fn a_login_connects_the_member_and_the_organisations_they_post_for() {
    let env = Env::start().await;
    let grant = env.login("herald_sandbox").await;
    assert!(grant.expires_at.unwrap() > Utc::now() + TimeDelta::days(59));
    assert!(grant.scopes.contains(&"w_member_social".to_owned()));
    let accounts = env.adapter.accounts(&grant).await.unwrap();
    let ids: Vec<&str> = accounts
        .iter()
        .map(|a| a.profile.account_id.as_str())
        .collect();
    assert!(ids[0].starts_with("urn:li:person:"));
    // The analyst role (10000002) may not post, so it is not a connection.
    assert_eq!(
        &ids[1..],
        [
            "urn:li:organization:10000001",
            "urn:li:organization:10000003"
        ]
    );
    assert_eq!(accounts[0].profile.display_name, "Herald Sandbox");
    assert_eq!(accounts[1].profile.display_name, "Herald Sandbox Inc.");
    assert_eq!(accounts[1].profile.username, "herald-sandbox");
    // Every account shares the login's grant: the vault holds LinkedIn's plain tokens.
    assert!(accounts.iter().all(|a| a.grant.is_none()));
    let issued = env.sandbox.linkedin_state().tokens_issued;
    assert_eq!(grant.access_token.expose(), issued[0].access_token);
    // The login ends 365 days after this first authorization, however often it is refreshed.
    let login_ends = grant.refresh_token_expires_at.expect("the login's end");
    assert!(
        (login_ends - (Utc::now() + TimeDelta::days(365)))
            .num_seconds()
            .abs()
            < 60
    );

    // An organisation connection survives a refresh, which returns the same (non-rotating)
    // refresh token and restates the login's end; it posts as the organisation.
    let org = Conn {
        account: accounts[1].profile.clone(),
        grant: grant.clone(),
    };
    let fresh = env
        .adapter
        .refresh(&org.account, org.refresh_token.as_ref().unwrap())
        .await
        .unwrap();
    assert_eq!(fresh.refresh_token, org.refresh_token);
    assert_ne!(fresh.access_token, org.access_token);
    let restated = fresh.refresh_token_expires_at.expect("restated");
    assert!((restated - login_ends).num_seconds().abs() < 60);
    let post = env
        .post(&org.with(fresh), &text("from the page"))
        .await
        .unwrap();
    let state = env.sandbox.linkedin_state();
    assert_eq!(state.posts[0].author, "urn:li:organization:10000001");
    assert_eq!(state.posts[0].urn, post.post_id);

    let refused = env
        .adapter
        .refresh(&org.account, &Secret::new("not-a-token"))
        .await
        .unwrap_err();
    assert_eq!(refused.class, ErrorClass::ReauthorizationRequired);
    assert!(refused.message.contains("365 days"), "{}", refused.message);
    assert!(!refused.message.contains("not-a-token"));
    assert!(!refused.message.contains("herald-sandbox-linkedin-secret"));
    env.sandbox.stop().await;
}

#[tokio::test]
async fn without_programmatic_refresh_tokens_the_grant_has_none() {
    let env = Env::start_with(|s| s.refresh_tokens = false, |_| {}).await;
    let accounts = env.connect("li_plain").await;
    let grant = &accounts[0];
    assert!(grant.refresh_token.is_none());
    assert!(grant.refresh_token_expires_at.is_none());
    assert!(grant.expires_at.unwrap() < Utc::now() + TimeDelta::days(61));
    env.sandbox.stop().await;
}

#[tokio::test]
async fn text_and_article_posts_escape_little_text_format() {
    let env = Env::start().await;
    let grant = env.member("li_writer").await;
    let words = "Release (v2) [beta] is out_now @team <3 #rust";
    let post = env.post(&grant, &text(words)).await.unwrap();
    assert!(post.post_id.starts_with("urn:li:share:"));
    assert_eq!(
        post.url,
        format!(
            "{}/feed/update/{}/",
            env.sandbox.linkedin_base_url(),
            post.post_id
        )
    );
    let article = PostDraft {
        text: "Read our notes\nsecond line".into(),
        link: Some("https://example.com/notes".into()),
        ..PostDraft::default()
    };
    env.post(&grant, &article).await.unwrap();
    let titled = PostDraft {
        text: "Another read".into(),
        link: Some("https://example.com/other".into()),
        title: Some("The title".into()),
        ..PostDraft::default()
    };
    env.post(&grant, &titled).await.unwrap();
    let state = env.sandbox.linkedin_state();
    assert_eq!(state.posts[0].text, words);
    assert!(!state.posts[0].truncated);
    assert_eq!(state.posts[0].visibility, "PUBLIC");
    assert_eq!(state.posts[1].content_kind, "article");
    assert_eq!(
        state.posts[1].content_title.as_deref(),
        Some("Read our notes")
    );
    assert_eq!(state.posts[2].content_title.as_deref(), Some("The title"));
    assert!(state.posts.iter().all(|p| p.linkedin_version.len() == 6));

    // Visibility comes from the options; organisations have no connections.
    let mut connections = text("for my network");
    connections.options = PublishOptions::default();
    connections.options.linkedin.visibility = Some("CONNECTIONS".into());
    env.post(&grant, &connections).await.unwrap();
    assert_eq!(
        env.sandbox.linkedin_state().posts[3].visibility,
        "CONNECTIONS"
    );
    let org = env.connect("herald_sandbox").await.remove(1);
    let before = env.sandbox.linkedin_state().requests.len();
    let refused = failure(env.post(&org, &connections).await);
    assert_eq!(refused.class, ErrorClass::Permanent);
    assert!(refused.message.contains("PUBLIC"));
    assert_eq!(
        env.sandbox.linkedin_state().requests.len(),
        before,
        "refused before calling"
    );
    env.sandbox.stop().await;
}

#[tokio::test]
async fn image_and_multi_image_posts() {
    let env = Env::start().await;
    let grant = env.member("li_photos").await;
    let progress = Progress::default();
    let first = env
        .upload(
            &grant,
            &image(env.media_url("a.png", 3000)),
            None,
            &progress,
        )
        .await
        .unwrap();
    assert!(first.starts_with("urn:li:image:"));
    assert_eq!(*progress.started.lock().unwrap(), [3000]);
    assert_eq!(*progress.chunks.lock().unwrap(), [3000]);
    let single = PostDraft {
        text: "one image".into(),
        media_ids: vec![first.clone()],
        media: vec![image(env.media_url("a.png", 3000))],
        ..PostDraft::default()
    };
    env.post(&grant, &single).await.unwrap();
    let second = env
        .upload(
            &grant,
            &image(env.media_url("b.png", 2000)),
            None,
            &Progress::default(),
        )
        .await
        .unwrap();
    let multi = PostDraft {
        text: "two images".into(),
        media_ids: vec![first.clone(), second.clone()],
        link: Some("https://example.com/gallery".into()),
        ..PostDraft::default()
    };
    env.post(&grant, &multi).await.unwrap();
    let state = env.sandbox.linkedin_state();
    assert_eq!(state.images.len(), 2);
    assert_eq!(state.images[0].bytes, 3000);
    assert_eq!(state.posts[0].content_kind, "image");
    assert_eq!(state.posts[1].content_kind, "multi_image");
    assert_eq!(state.posts[1].media, [first, second]);
    // With media, the link goes into the text.
    assert_eq!(
        state.posts[1].text,
        "two images https://example.com/gallery"
    );
    env.sandbox.stop().await;
}

#[tokio::test]
async fn a_poll_asks_its_question_for_one_of_linkedins_durations() {
    let env = Env::start().await;
    let member = env.member("li_polls").await;
    let draft = PostDraft {
        text: "Help us pick the next feature (vote below)".into(),
        link: Some("https://example.com/roadmap".into()),
        poll: Some(Poll {
            options: vec!["Docs".into(), " Tests ".into(), "Speed".into()],
            duration_minutes: 4_320,
            question: Some("Which should we ship first?".into()),
        }),
        ..PostDraft::default()
    };
    let created = env.post(&member, &draft).await.unwrap();
    let state = env.sandbox.linkedin_state();
    let post = &state.posts[0];
    assert_eq!(post.urn, created.post_id);
    assert_eq!(post.content_kind, "poll");
    assert_eq!(
        post.poll,
        Some(serde_json::json!({
            "question": "Which should we ship first?",
            "options": [{"text": "Docs"}, {"text": "Tests"}, {"text": "Speed"}],
            "settings": {"duration": "THREE_DAYS"},
        }))
    );
    // One kind of content per post: the link goes into the text, escaped.
    assert_eq!(
        post.text,
        "Help us pick the next feature (vote below) https://example.com/roadmap"
    );

    // Without a question apart from it, the text is the question.
    let plain = PostDraft {
        text: "Tabs or spaces?".into(),
        poll: Some(Poll {
            options: vec!["Tabs".into(), "Spaces".into()],
            duration_minutes: 20_160,
            question: None,
        }),
        ..PostDraft::default()
    };
    env.post(&member, &plain).await.unwrap();
    let poll = env.sandbox.linkedin_state().posts[1].poll.clone().unwrap();
    assert_eq!(poll["question"], "Tabs or spaces?");
    assert_eq!(poll["settings"]["duration"], "FOURTEEN_DAYS");
    env.sandbox.stop().await;
}

fn document(url: String) -> MediaItem {
    MediaItem {
        url,
        kind: MediaKind::Document,
        mime_type: "application/pdf".into(),
        probe: None,
    }
}

#[tokio::test]
async fn a_document_post_shows_its_pages_under_a_title() {
    let env = Env::start().await;
    let organisation = env.connect("herald_sandbox").await.remove(1);
    let deck = document(env.media_url("Q3%20results.pdf", 5000));
    let progress = Progress::default();
    let urn = env
        .upload(&organisation, &deck, None, &progress)
        .await
        .unwrap();
    assert!(urn.starts_with("urn:li:document:"), "{urn}");
    assert_eq!(*progress.chunks.lock().unwrap(), [5000]);
    let draft = PostDraft {
        text: "Our quarterly results".into(),
        media_ids: vec![urn.clone()],
        media: vec![deck.clone()],
        ..PostDraft::default()
    };
    let created = env.post(&organisation, &draft).await.unwrap();

    let state = env.sandbox.linkedin_state();
    assert_eq!(state.documents.len(), 1);
    assert_eq!(state.documents[0].owner, organisation.account.account_id);
    assert_eq!(state.documents[0].bytes, 5000);
    assert_eq!(state.posts.len(), 1);
    let post = &state.posts[0];
    assert_eq!(post.urn, created.post_id);
    assert_eq!(post.content_kind, "document");
    assert_eq!(post.media, [urn]);
    // No title given: the file's name, as LinkedIn's composer shows it.
    assert_eq!(post.content_title.as_deref(), Some("Q3 results.pdf"));

    // A title given is the one shown.
    let second = env
        .upload(&organisation, &deck, None, &Progress::default())
        .await
        .unwrap();
    let titled = PostDraft {
        text: "The deck again".into(),
        title: Some("Quarterly results, third quarter".into()),
        media_ids: vec![second],
        ..draft
    };
    env.post(&organisation, &titled).await.unwrap();
    assert_eq!(
        env.sandbox.linkedin_state().posts[1]
            .content_title
            .as_deref(),
        Some("Quarterly results, third quarter")
    );
    env.sandbox.stop().await;
}

#[tokio::test]
async fn a_document_linkedin_cannot_read_or_too_large_to_take_fails_with_what_to_fix() {
    let env = Env::start().await;
    let member = env.member("li_bad_docs").await;

    // Bytes that are no document: uploaded, then LinkedIn's processing fails.
    let noise = MediaItem {
        url: env.media_url("scan.png", 4000),
        ..document(String::new())
    };
    let failed = env
        .upload(&member, &noise, None, &Progress::default())
        .await
        .unwrap_err();
    assert_eq!(failed.class, ErrorClass::Permanent);
    assert_eq!(failed.code, "processing_failed");
    assert!(failed.message.contains("PDF, PPT(X) or DOC(X)"), "{failed}");

    // Over 100 MB: refused before LinkedIn is asked for an upload URL.
    let huge = document(env.media_url("huge.pdf", 100 * 1024 * 1024 + 1));
    let refused = env
        .upload(&member, &huge, None, &Progress::default())
        .await
        .unwrap_err();
    assert_eq!(refused.class, ErrorClass::Permanent);
    assert_eq!(refused.code, "media_too_large");
    assert!(refused.message.contains("at most 100 MB"), "{refused}");
    assert_eq!(env.sandbox.linkedin_state().documents.len(), 1);
    env.sandbox.stop().await;
}

#[tokio::test]
async fn a_video_goes_up_in_byte_ranges_and_resumes_after_a_failed_part() {
    let env = Env::start().await;
    let grant = env.member("li_video").await;
    let clip = video(env.media_url("clip.mp4", 250_000));

    // Three parts; a handle before the first byte and after every part.
    let progress = Progress::default();
    let urn = env.upload(&grant, &clip, None, &progress).await.unwrap();
    assert!(urn.starts_with("urn:li:video:"));
    assert_eq!(*progress.started.lock().unwrap(), [250_000]);
    assert_eq!(
        *progress.chunks.lock().unwrap(),
        [100_000, 200_000, 250_000]
    );
    assert_eq!(progress.sessions.lock().unwrap().len(), 4);
    let post = PostDraft {
        text: "a video".into(),
        title: Some("Clip".into()),
        media_ids: vec![urn.clone()],
        media: vec![clip.clone()],
        ..PostDraft::default()
    };
    let created = env.post(&grant, &post).await.unwrap();
    assert!(created.post_id.starts_with("urn:li:ugcPost:"));
    let state = env.sandbox.linkedin_state();
    assert_eq!(state.posts[0].content_title.as_deref(), Some("Clip"));
    assert_eq!(state.videos[0].parts_uploaded, 3);

    // The second part fails: the attempt ends, having recorded the first part's ETag.
    let sandbox = &env.sandbox;
    let interrupted = Progress {
        on_chunk: Some(Box::new(move |n| {
            if n == 1 {
                sandbox.inject_linkedin_fault(
                    LinkedInEndpoint::Upload,
                    Fault::ServerError { status: 503 },
                    1,
                );
            }
        })),
        ..Progress::default()
    };
    let failed = env
        .upload(&grant, &clip, None, &interrupted)
        .await
        .unwrap_err();
    assert_eq!(failed.class, ErrorClass::Retryable);
    assert_eq!(*interrupted.chunks.lock().unwrap(), [100_000]);
    let resume = UploadResume {
        session: interrupted
            .sessions
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap(),
        bytes_confirmed: 100_000,
    };
    let videos_before = env.sandbox.linkedin_state().videos.len();

    // The next attempt sends only the two remaining parts to the same video.
    let after = Progress::default();
    let resumed = env
        .upload(&grant, &clip, Some(&resume), &after)
        .await
        .unwrap();
    assert_eq!(*after.chunks.lock().unwrap(), [200_000, 250_000]);
    let state = env.sandbox.linkedin_state();
    assert_eq!(
        state.videos.len(),
        videos_before,
        "no new upload was started"
    );
    let video = state.videos.iter().find(|v| v.urn == resumed).unwrap();
    assert_eq!(video.status, "AVAILABLE");
    assert_eq!(video.parts_uploaded, 3);
    let puts = state.requests.iter().filter(|r| r.method == "PUT").count();
    assert_eq!(
        puts,
        3 + 2 + 2,
        "three parts, two (one refused), then the last two"
    );
    drop(interrupted);
    env.sandbox.stop().await;
}

/// An organisation's video: the twin checks the organisation role when the upload is finalized
/// and when its status is read, which once blocked the twin for good.
#[tokio::test]
async fn an_organisation_publishes_a_video() {
    let env = Env::start().await;
    let conns = env.connect("herald_sandbox").await;
    let org = conns
        .iter()
        .find(|c| c.account.account_id == "urn:li:organization:10000003")
        .expect("the content administrator's organisation is a connection");
    let clip = video(env.media_url("clip.mp4", 250_000));
    let progress = Progress::default();
    let urn = env
        .upload(org, &clip, None, &progress)
        .await
        .expect("the organisation's video uploads and finalizes");
    let post = PostDraft {
        text: "an organisation's video".into(),
        title: Some("Clip".into()),
        media_ids: vec![urn.clone()],
        media: vec![clip],
        ..PostDraft::default()
    };
    let created = env.post(org, &post).await.unwrap();
    assert!(created.post_id.starts_with("urn:li:ugcPost:"));
    let state = env.sandbox.linkedin_state();
    assert_eq!(state.videos.len(), 1);
    assert_eq!(state.videos[0].owner, "urn:li:organization:10000003");
    assert_eq!(state.videos[0].status, "AVAILABLE");
    assert_eq!(state.posts.len(), 1);
    assert_eq!(state.posts[0].author, "urn:li:organization:10000003");
    assert_eq!(state.posts[0].media, vec![urn]);
    env.sandbox.stop().await;
}

#[tokio::test]
async fn refusals_are_classified_for_the_publisher() {
    let env = Env::start_with(|s| s.posts_per_day = 3, |_| {}).await;
    let grant = env.member("li_errors").await;

    env.fault(
        LinkedInEndpoint::CreatePost,
        Fault::ServerError { status: 503 },
    );
    assert_eq!(
        failure(env.post(&grant, &text("a")).await).class,
        ErrorClass::Retryable
    );

    // A throttle without a daily limit: the configured back-off, shared through the gate.
    env.fault(
        LinkedInEndpoint::CreatePost,
        Fault::RateLimited {
            retry_after_secs: 5,
        },
    );
    let gate = Gate::default();
    let before = Utc::now();
    let throttled = match env
        .adapter
        .create_post(&grant.access_token, &grant.draft(&text("b")), &gate)
        .await
    {
        Err(PostError::Failed(f)) => f,
        other => panic!("{other:?}"),
    };
    assert_eq!(throttled.class, ErrorClass::RateLimited);
    let until = throttled.not_before.unwrap();
    assert!(
        until >= before + TimeDelta::seconds(89) && until <= Utc::now() + TimeDelta::seconds(91)
    );
    assert!(gate
        .observed
        .lock()
        .unwrap()
        .iter()
        .any(|(e, left, _)| e == "linkedin_posts" && *left == Some(0)));

    // The daily posting limit: closed until midnight UTC.
    for i in 0..3 {
        env.post(&grant, &text(&format!("post {i}"))).await.unwrap();
    }
    let gate = Gate::default();
    let daily = match env
        .adapter
        .create_post(&grant.access_token, &grant.draft(&text("one more")), &gate)
        .await
    {
        Err(PostError::Failed(f)) => f,
        other => panic!("{other:?}"),
    };
    let midnight = (Utc::now().date_naive() + TimeDelta::days(1))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    assert_eq!(daily.not_before, Some(midnight));
    assert!(daily.message.contains("midnight UTC"));
    assert!(gate
        .observed
        .lock()
        .unwrap()
        .iter()
        .any(|(_, left, at)| *left == Some(0) && *at == Some(midnight)));

    // The same post again: a duplicate, with the code the publisher reconciles on.
    let env = Env::start().await;
    let grant = env.member("li_dupes").await;
    env.post(&grant, &text("same words")).await.unwrap();
    let dup = failure(env.post(&grant, &text("same words")).await);
    assert_eq!(dup.code, herald_domain::failure::DUPLICATE_POST);

    // An expired token asks for a refresh; a revoked grant cannot be refreshed.
    env.fault(LinkedInEndpoint::CreatePost, Fault::ExpireToken);
    let expired = failure(env.post(&grant, &text("c")).await);
    assert_eq!(expired.class, ErrorClass::Auth);
    assert!(expired.message.contains("60 days"));
    let fresh = env
        .adapter
        .refresh(&grant.account, grant.refresh_token.as_ref().unwrap())
        .await
        .unwrap();
    let fresh = grant.with(fresh);
    env.post(&fresh, &text("after refresh")).await.unwrap();
    env.fault(LinkedInEndpoint::CreatePost, Fault::RevokeGrant);
    assert_eq!(
        failure(env.post(&fresh, &text("d")).await).class,
        ErrorClass::Auth
    );
    let refused = env
        .adapter
        .refresh(&fresh.account, fresh.refresh_token.as_ref().unwrap())
        .await
        .unwrap_err();
    assert_eq!(refused.class, ErrorClass::ReauthorizationRequired);

    // Media LinkedIn cannot process fails for good with advice.
    let other = env.member("li_media").await;
    env.fault(LinkedInEndpoint::FinalizeVideo, Fault::RejectMedia);
    let rejected = env
        .upload(
            &other,
            &video(env.media_url("bad.mp4", 120_000)),
            None,
            &Progress::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(rejected.class, ErrorClass::Permanent);
    assert!(rejected.message.contains("MP4"), "{}", rejected.message);
    env.sandbox.stop().await;
}

#[tokio::test]
async fn a_sunset_version_says_which_setting_to_raise() {
    let env = Env::start_with(|_| {}, |c| c.version = "202301".into()).await;
    let grant = env.member("li_old").await;
    let refused = failure(env.post(&grant, &text("old")).await);
    assert_eq!(refused.class, ErrorClass::Permanent);
    assert_eq!(refused.code, "nonexistent_version");
    assert!(refused.message.contains("LINKEDIN_VERSION"));
    env.sandbox.stop().await;
}

#[tokio::test]
async fn a_timed_out_post_is_found_again_and_revocation_ends_the_login() {
    let env = Env::start().await;
    let accounts = env.connect("herald_sandbox").await;
    let member = accounts[0].clone();
    let since = Utc::now();
    env.fault(
        LinkedInEndpoint::CreatePost,
        Fault::TimeoutAfterSuccess { secs: 1.5 },
    );
    let draft = text("did it (really) post?");
    match env.post(&member, &draft).await {
        Err(PostError::OutcomeUnknown(_)) => {}
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
    let found = env
        .adapter
        .find_post(
            &member.access_token,
            since,
            &member.draft(&draft),
            &Gate::default(),
        )
        .await
        .unwrap()
        .expect("the post exists");
    let state = env.sandbox.linkedin_state();
    assert_eq!(state.posts.len(), 1);
    assert_eq!(found.post_id, state.posts[0].urn);
    let missing = env
        .adapter
        .find_post(
            &member.access_token,
            since,
            &member.draft(&text("never posted")),
            &Gate::default(),
        )
        .await
        .unwrap();
    assert!(missing.is_none());

    // Revoking ends the login: the member and every organisation of it (which is why Herald
    // revokes only when the last connection of a login goes; see the e2e tests).
    let org = accounts[1].clone();
    env.post(&org, &text("from the organisation"))
        .await
        .unwrap();
    env.adapter.revoke(&org.account, &org).await.unwrap();
    assert_eq!(
        failure(env.post(&member, &text("gone")).await).class,
        ErrorClass::Auth
    );
    assert_eq!(
        failure(env.post(&org, &text("gone too")).await).class,
        ErrorClass::Auth
    );
    env.sandbox.stop().await;
}

#[tokio::test]
async fn media_urls_on_private_addresses_are_refused_by_default() {
    let env = Env::start_with(|_| {}, |c| c.media_policy = MediaUrlPolicy::default()).await;
    let grant = env.member("li_ssrf").await;
    let refused = env
        .upload(
            &grant,
            &image(env.media_url("a.png", 100)),
            None,
            &Progress::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.class, ErrorClass::Permanent);
    assert_eq!(refused.code, "media_url_refused");
    assert!(
        env.sandbox.linkedin_state().images.is_empty(),
        "nothing started"
    );
    env.sandbox.stop().await;
}

/// A vault entry an older Herald wrote (`"{author URN} {token}"`) still publishes, and its
/// next refresh gives the plain form.
#[tokio::test]
async fn an_old_author_prefixed_grant_still_publishes_and_refreshes_to_the_plain_form() {
    let env = Env::start().await;
    let org = env.connect("herald_sandbox").await.remove(1);
    let urn = &org.account.account_id;
    let old_form = TokenGrant {
        access_token: Secret::new(format!("{urn} {}", org.access_token.expose())),
        refresh_token: org
            .refresh_token
            .as_ref()
            .map(|r| Secret::new(format!("{urn} {}", r.expose()))),
        ..org.grant.clone()
    };
    let read = env.adapter.current_form(old_form.clone());
    assert_eq!(read, org.grant);
    env.post(&org.with(read), &text("posted from an old entry"))
        .await
        .unwrap();
    assert_eq!(
        env.sandbox.linkedin_state().posts[0].author,
        "urn:li:organization:10000001"
    );
    // Refreshing with the old form's refresh token works too, and returns plain tokens.
    let fresh = env
        .adapter
        .refresh(&org.account, old_form.refresh_token.as_ref().unwrap())
        .await
        .unwrap();
    assert!(!fresh.access_token.expose().starts_with("urn:li:"));
    assert_eq!(fresh.refresh_token, org.refresh_token);
    env.sandbox.stop().await;
}

/// LinkedIn's Application limit counts every call of the app: the 429 one member meets closes
/// the endpoint for every member of the app until midnight UTC, without another 429; a Member
/// limit closes it only for that member.
#[tokio::test]
async fn the_application_limit_holds_for_every_member_of_the_app() {
    use herald_domain::Platform;
    use herald_infrastructure::rate_limit::SharedRateLimits;
    let env = Env::start_with(|li| li.app_calls_per_day = 30, |_| {}).await;
    let erin = env.member("li_erin").await;
    let frank = env.member("li_frank").await;
    let path = std::env::temp_dir().join(format!(
        "herald_linkedin_limits_{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let db = herald_infrastructure::db::Db::connect(&format!("sqlite://{}", path.display()), 4)
        .await
        .unwrap();
    let erin_gate = SharedRateLimits::new(db.clone(), Platform::Linkedin, "erin");
    let frank_gate = SharedRateLimits::new(db.clone(), Platform::Linkedin, "frank");
    let mut refused = None;
    for i in 0..30 {
        match env
            .adapter
            .create_post(
                &erin.access_token,
                &erin.draft(&text(&format!("erin {i}"))),
                &erin_gate,
            )
            .await
        {
            Ok(_) => continue,
            Err(PostError::Failed(f)) => {
                refused = Some(f);
                break;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    let refused = refused.expect("the application limit is reached");
    assert_eq!(refused.code, "too_many_requests", "{refused:?}");
    assert!(
        refused.message.contains("APPLICATION DAY"),
        "{}",
        refused.message
    );
    let midnight = (Utc::now().date_naive() + TimeDelta::days(1))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let before = env.sandbox.linkedin_state().requests.len();
    let waiting = failure(
        env.adapter
            .create_post(
                &frank.access_token,
                &frank.draft(&text("frank")),
                &frank_gate,
            )
            .await,
    );
    assert_eq!(waiting.code, "rate_limit_exhausted", "{waiting:?}");
    assert_eq!(waiting.not_before, Some(midnight));
    let requests = env.sandbox.linkedin_state().requests;
    assert_eq!(requests.len(), before, "Frank's post was not sent");
    assert_eq!(
        requests.iter().filter(|r| r.status == Some(429)).count(),
        1,
        "{requests:?}"
    );
    env.sandbox.stop().await;
}
