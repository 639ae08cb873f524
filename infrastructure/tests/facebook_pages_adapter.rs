//! The Facebook Pages adapter against the sandbox's Meta twin over real HTTP: one login, one
//! connection per Page; Page-token renewal; text, link, photo and video posts; an interrupted
//! video upload resumed; reconciliation; and the failure classes the publisher relies on.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use herald_domain::{ErrorClass, MediaItem, MediaKind, PlatformFailure};
use herald_infrastructure::media_source::MediaUrlPolicy;
use herald_infrastructure::platforms::facebook_pages::{FacebookPagesAdapter, FacebookPagesConfig};
use herald_infrastructure::platforms::{
    ConnectedAccount, MediaUpload, PlatformAdapter, PostDraft, PostError, RateLimitGate,
    TokenGrant, UploadProgress, UploadResume,
};
use herald_infrastructure::secret::Secret;
use herald_sandbox::{Fault, MetaEndpoint, MetaPageSpec, MetaUserSpec, Sandbox, SandboxConfig};
use url::Url;

const REDIRECT: &str = "http://127.0.0.1:9/callback";

struct Env {
    sandbox: Sandbox,
    adapter: FacebookPagesAdapter,
}

impl Env {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn start_with(adjust: impl FnOnce(&mut SandboxConfig)) -> Self {
        let mut sandbox_config = SandboxConfig::default();
        sandbox_config.meta.video_chunk_size = 1000;
        sandbox_config.meta.video_processing_delay = Duration::from_millis(300);
        adjust(&mut sandbox_config);
        let sandbox = Sandbox::start("127.0.0.1:0", sandbox_config)
            .await
            .expect("sandbox starts");
        let defaults = SandboxConfig::default().meta;
        let mut config = FacebookPagesConfig::for_base(
            Url::parse(&sandbox.meta_base_url()).unwrap(),
            defaults.client_id,
            Secret::new(defaults.client_secret),
        );
        config.graph.request_timeout = Duration::from_secs(1);
        // The sandbox serves the videos on loopback.
        config.media_policy = MediaUrlPolicy::new(true, "");
        config.status_poll_interval = Duration::from_millis(50);
        Self {
            adapter: FacebookPagesAdapter::new(config).expect("adapter builds"),
            sandbox,
        }
    }

    /// The whole login as `user` (declining `decline`): the login's grant.
    async fn login(&self, user: &str, decline: &str) -> TokenGrant {
        let start = self.adapter.authorization_url(REDIRECT);
        assert!(start.url.query_pairs().any(|(k, v)| k == "scope"
            && v == "pages_show_list,pages_read_engagement,pages_manage_posts"));
        let url = format!(
            "{}&sandbox_user={user}&sandbox_decline={decline}",
            start.url
        );
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let consent = browser.get(url).send().await.unwrap();
        assert_eq!(consent.status(), 302, "the dialog redirects");
        let location = consent.headers()["location"].to_str().unwrap();
        let callback: HashMap<String, String> = Url::parse(location)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        assert_eq!(callback["state"], start.state, "state always travels");
        self.adapter
            .exchange_code(&callback["code"], &start.pkce_verifier, REDIRECT)
            .await
            .expect("code exchange succeeds")
    }

    /// The first Page of `user`.
    async fn page(&self, user: &str) -> ConnectedAccount {
        let login = self.login(user, "").await;
        self.adapter.accounts(&login).await.unwrap().remove(0)
    }

    fn media(&self, name: &str, bytes: u64) -> MediaItem {
        let kind = if name.ends_with(".mp4") {
            MediaKind::Video
        } else {
            MediaKind::Image
        };
        MediaItem {
            url: format!("{}/media/{name}?bytes={bytes}", self.sandbox.base_url()),
            kind,
            mime_type: if kind == MediaKind::Video {
                "video/mp4".into()
            } else {
                "image/jpeg".into()
            },
            probe: None,
        }
    }

    async fn upload(
        &self,
        token: &Secret,
        item: &MediaItem,
        post: &PostDraft,
        resume: Option<&UploadResume>,
        progress: &Progress,
    ) -> Result<String, PlatformFailure> {
        let upload = MediaUpload {
            resume,
            ..MediaUpload::single(item, post)
        };
        self.adapter
            .upload_media(token, &upload, &Gate::default(), progress)
            .await
    }

    async fn post(&self, token: &Secret, draft: &PostDraft) -> Result<String, PostError> {
        self.adapter
            .create_post(token, draft, &Gate::default())
            .await
            .map(|p| p.post_id)
    }

    fn fault(&self, endpoint: MetaEndpoint, fault: Fault) {
        self.sandbox.inject_meta_fault(endpoint, fault, 1);
    }
}

fn token(account: &ConnectedAccount) -> Secret {
    account.grant.as_ref().unwrap().access_token.clone()
}

fn text(t: &str) -> PostDraft {
    PostDraft {
        text: t.to_owned(),
        ..PostDraft::default()
    }
}

fn failed(result: Result<String, PostError>) -> PlatformFailure {
    match result {
        Err(PostError::Failed(f)) => f,
        other => panic!("expected a failure, got {other:?}"),
    }
}

type Observation = (String, Option<u64>, Option<DateTime<Utc>>);

#[derive(Default)]
struct Gate {
    refuse_until: Option<DateTime<Utc>>,
    acquired: Mutex<Vec<String>>,
    observed: Mutex<Vec<Observation>>,
}

#[async_trait::async_trait]
impl RateLimitGate for Gate {
    async fn acquire(&self, endpoint: &str) -> Result<(), DateTime<Utc>> {
        self.acquired.lock().unwrap().push(endpoint.to_owned());
        self.refuse_until.map_or(Ok(()), Err)
    }

    async fn observe(&self, endpoint: &str, remaining: Option<u64>, reset: Option<DateTime<Utc>>) {
        self.observed
            .lock()
            .unwrap()
            .push((endpoint.to_owned(), remaining, reset));
    }
}

#[derive(Default)]
struct Progress {
    started: Mutex<Vec<u64>>,
    session: Mutex<Option<Secret>>,
    confirmed: Mutex<Vec<u64>>,
}

impl Progress {
    fn resume(&self) -> UploadResume {
        UploadResume {
            session: self.session.lock().unwrap().clone().expect("a session"),
            bytes_confirmed: self.confirmed.lock().unwrap().last().copied().unwrap_or(0),
        }
    }
}

#[async_trait::async_trait]
impl UploadProgress for Progress {
    async fn started(&self, total_bytes: u64) {
        self.started.lock().unwrap().push(total_bytes);
    }

    async fn session_opened(&self, session: &Secret) {
        assert!(
            self.confirmed.lock().unwrap().is_empty(),
            "the session is announced before any byte"
        );
        *self.session.lock().unwrap() = Some(session.clone());
    }

    async fn chunk_sent(&self, bytes_sent: u64, _total_bytes: u64) {
        self.confirmed.lock().unwrap().push(bytes_sent);
    }
}

#[tokio::test]
async fn one_login_connects_every_page_it_can_publish_to() {
    let env = Env::start().await;
    let login = env.login("fb_alice", "").await;
    assert!(login.expires_at.unwrap() > Utc::now() + TimeDelta::days(59));
    let accounts = env.adapter.accounts(&login).await.unwrap();
    let names: Vec<&str> = accounts
        .iter()
        .map(|a| a.profile.display_name.as_str())
        .collect();
    assert_eq!(names, ["fb_alice Page One", "fb_alice Page Two"]);
    let state = env.sandbox.meta_state();
    for account in &accounts {
        let grant = account.grant.as_ref().expect("each Page has its own token");
        assert_eq!(grant.expires_at, None, "Page tokens do not expire");
        assert!(grant.refresh_token.is_some(), "renewable through the login");
        let issued = state
            .tokens_issued
            .iter()
            .find(|t| t.access_token == grant.access_token.expose())
            .unwrap();
        assert_eq!(issued.kind, "page");
        assert_eq!(
            issued.page_id.as_deref(),
            Some(account.profile.account_id.as_str())
        );
        let me = env.adapter.account(&grant.access_token).await.unwrap();
        assert_eq!(me.account_id, account.profile.account_id);
    }

    // Renewal: a new Page token through a re-exchanged user token; the Page is the account,
    // the grant keeps only the user token.
    let grant = accounts[0].grant.clone().unwrap();
    assert_eq!(grant.refresh_token.as_ref(), Some(&login.access_token));
    let renewed = env
        .adapter
        .refresh(&accounts[0].profile, grant.refresh_token.as_ref().unwrap())
        .await
        .unwrap();
    assert!(renewed
        .refresh_token
        .as_ref()
        .is_some_and(|r| !r.expose().contains(&accounts[0].profile.account_id)));
    assert_ne!(renewed.access_token, grant.access_token);
    env.post(&renewed.access_token, &text("with the renewed token"))
        .await
        .unwrap();

    // A Page the person cannot create content on is left out.
    env.sandbox.define_meta_user(&MetaUserSpec {
        username: "fb_mixed".into(),
        name: None,
        pages: vec![
            MetaPageSpec {
                name: "Watched Page".into(),
                category: None,
                tasks: Some(vec!["ANALYZE".into()]),
                instagram_business_account: None,
            },
            MetaPageSpec {
                name: "Own Page".into(),
                category: None,
                tasks: None,
                instagram_business_account: None,
            },
        ],
    });
    let mixed = env.login("fb_mixed", "").await;
    let accounts = env.adapter.accounts(&mixed).await.unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].profile.display_name, "Own Page");

    // Declined permissions and no Pages are explained.
    let declined = env.login("fb_alice", "pages_manage_posts").await;
    let error = env.adapter.accounts(&declined).await.unwrap_err();
    assert_eq!(error.code, "permissions_declined");
    assert!(
        error.message.contains("pages_manage_posts"),
        "{}",
        error.message
    );
    env.sandbox.define_meta_user(&MetaUserSpec {
        username: "fb_nobody".into(),
        name: None,
        pages: vec![],
    });
    let nobody = env.login("fb_nobody", "").await;
    let error = env.adapter.accounts(&nobody).await.unwrap_err();
    assert_eq!(error.code, "no_pages");
    assert!(
        error.message.contains("create a Facebook Page"),
        "{}",
        error.message
    );

    // After the person removes the app, renewal needs them.
    env.fault(MetaEndpoint::Me, Fault::RevokeGrant);
    assert!(env.adapter.account(&login.access_token).await.is_err());
    let error = env
        .adapter
        .refresh(&accounts[0].profile, grant.refresh_token.as_ref().unwrap())
        .await
        .unwrap_err();
    assert_eq!(error.class, ErrorClass::ReauthorizationRequired);
    assert!(
        error.message.contains("connect your Facebook Pages again"),
        "{}",
        error.message
    );
    assert!(!error.message.contains(grant.access_token.expose()));
    env.sandbox.stop().await;
}

#[tokio::test]
async fn publishes_text_link_photo_and_video_posts_once() {
    let env = Env::start().await;
    let page = env.page("fb_bob").await;
    let token = token(&page);
    let gate = Gate::default();

    let created = env
        .adapter
        .create_post(&token, &text("Hello Page"), &gate)
        .await
        .unwrap();
    let state = env.sandbox.meta_state();
    assert_eq!(state.page_posts.len(), 1);
    assert_eq!(state.page_posts[0].id, created.post_id);
    assert_eq!(created.url, state.page_posts[0].permalink_url);
    assert!(gate
        .acquired
        .lock()
        .unwrap()
        .contains(&"facebook_feed".to_owned()));
    // Usage below 100 % is a percentage, not calls left: it closes nothing, so it is not
    // reported as a count (a spent budget is; see `a_spent_page_budget_holds_that_page_only`).
    assert!(!gate
        .observed
        .lock()
        .unwrap()
        .iter()
        .any(|(e, left, _)| e == "meta_usage" && left.is_some_and(|l| l > 0)));
    assert!(
        gate.acquired.lock().unwrap().contains(&format!(
            "app:{}:meta_app_usage",
            herald_sandbox::meta::MetaConfig::default().client_id
        )),
        "every call asks the app's budget too"
    );

    let mut link = text("Read this");
    link.link = Some("https://example.com/story".into());
    env.post(&token, &link).await.unwrap();

    // Three photos: uploaded unpublished, then one post.
    let progress = Progress::default();
    let mut album = text("An album");
    for n in 0..3 {
        let item = env.media(&format!("p{n}.jpg"), 2000);
        let reference = env
            .upload(&token, &item, &album, None, &progress)
            .await
            .unwrap();
        assert!(reference.starts_with("photo:"), "{reference}");
        album.media_ids.push(reference);
    }
    assert!(
        env.sandbox.meta_state().page_posts.len() == 2,
        "no post before create_post"
    );
    let album_id = env.post(&token, &album).await.unwrap();

    // A video: uploaded in chunks and published by the upload; create_post waits for it.
    let mut clip = text("A clip");
    clip.account = page.profile.clone();
    clip.title = Some("Clip title".into());
    let item = env.media("clip.mp4", 2500);
    let progress = Progress::default();
    let reference = env
        .upload(&token, &item, &clip, None, &progress)
        .await
        .unwrap();
    assert_eq!(*progress.started.lock().unwrap(), [2500]);
    assert_eq!(*progress.confirmed.lock().unwrap(), [1000, 2000, 2500]);
    clip.media_ids = vec![reference];
    let video_post = env
        .adapter
        .create_post(&token, &clip, &Gate::default())
        .await
        .unwrap();

    let state = env.sandbox.meta_state();
    assert_eq!(state.page_posts.len(), 4, "one post each");
    let album = state.page_posts.iter().find(|p| p.id == album_id).unwrap();
    assert_eq!(album.photo_urls.len(), 3);
    assert!(album.photo_urls[0].contains("p0.jpg"));
    let video = &state.videos[0];
    assert_eq!(
        (video.bytes_received, video.status.as_str()),
        (2500, "ready")
    );
    assert_eq!(video.title.as_deref(), Some("Clip title"));
    assert_eq!(video.description.as_deref(), Some("A clip"));
    assert_eq!(
        video_post.post_id,
        format!("{}_{}", video.page_id, video.id)
    );
    assert_eq!(
        video_post.url,
        format!(
            "https://www.facebook.com/{}/videos/{}/",
            video.page_id, video.id
        )
    );
    env.sandbox.stop().await;
}

#[tokio::test]
async fn an_interrupted_video_upload_resumes_where_facebook_stopped() {
    let env = Env::start().await;
    let page = env.page("fb_carol").await;
    let token = token(&page);
    let mut clip = text("Resumed clip");
    clip.account = page.profile.clone();
    let item = env.media("resume.mp4", 3500);

    // Facebook takes the first chunk but its answer is lost.
    let progress = Progress::default();
    env.fault(
        MetaEndpoint::VideoTransfer,
        Fault::TimeoutAfterSuccess { secs: 2.0 },
    );
    let failure = env
        .upload(&token, &item, &clip, None, &progress)
        .await
        .unwrap_err();
    assert_eq!(failure.class, ErrorClass::Retryable, "{}", failure.message);
    assert_eq!(
        progress.confirmed.lock().unwrap().len(),
        0,
        "Facebook took the chunk, but Herald did not hear it"
    );
    // Resuming from 0: Facebook corrects the offset, Herald skips what it already has.
    let resume = progress.resume();
    let reference = env
        .upload(&token, &item, &clip, Some(&resume), &progress)
        .await
        .unwrap();
    assert_eq!(progress.confirmed.lock().unwrap().last(), Some(&3500));
    let corrected = env
        .sandbox
        .meta_state()
        .requests
        .iter()
        .filter(|r| r.path.ends_with("/videos") && r.status == Some(400))
        .count();
    assert_eq!(corrected, 1, "one offset correction, then the rest");

    // The finish answer is lost: the next attempt sees the video and does not finish again.
    let item = env.media("lost-finish.mp4", 1500);
    let progress = Progress::default();
    env.fault(
        MetaEndpoint::VideoFinish,
        Fault::TimeoutAfterSuccess { secs: 2.0 },
    );
    let failure = env
        .upload(&token, &item, &clip, None, &progress)
        .await
        .unwrap_err();
    assert_eq!(failure.class, ErrorClass::Retryable);
    assert!(failure.message.contains("checks it"), "{}", failure.message);
    let again = env
        .upload(&token, &item, &clip, Some(&progress.resume()), &progress)
        .await
        .unwrap();

    clip.media_ids = vec![reference];
    env.post(&token, &clip).await.unwrap();
    clip.media_ids = vec![again];
    env.post(&token, &clip).await.unwrap();
    let state = env.sandbox.meta_state();
    assert_eq!(state.videos.len(), 2, "one upload session each");
    assert!(state.videos.iter().all(|v| v.bytes_received == v.file_size));
    assert_eq!(state.page_posts.len(), 2, "each video published once");
    env.sandbox.stop().await;
}

#[tokio::test]
async fn failures_are_classified_for_the_publisher() {
    let env = Env::start().await;
    let page = env.page("fb_dave").await;
    let token = token(&page);

    // A post whose answer is lost is found again by reconciliation.
    env.fault(
        MetaEndpoint::PageFeed,
        Fault::TimeoutAfterSuccess { secs: 2.0 },
    );
    let since = Utc::now();
    let draft = text("lost answer");
    match env.post(&token, &draft).await {
        Err(PostError::OutcomeUnknown(reason)) => assert!(reason.contains("may exist"), "{reason}"),
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
    let found = env
        .adapter
        .find_post(
            &token,
            since,
            &PostDraft {
                account: page.profile.clone(),
                ..draft.clone()
            },
            &Gate::default(),
        )
        .await
        .unwrap()
        .expect("the post is found");
    assert_eq!(env.sandbox.meta_state().page_posts[0].id, found.post_id);
    assert!(env
        .adapter
        .find_post(
            &token,
            since,
            &PostDraft {
                account: page.profile.clone(),
                ..text("never posted")
            },
            &Gate::default()
        )
        .await
        .unwrap()
        .is_none());

    // Sent again, Facebook calls it a duplicate: the outcome is unknown, and reconciliation
    // finds the first post.
    match env.post(&token, &draft).await {
        Err(PostError::OutcomeUnknown(reason)) => {
            assert!(reason.contains("Duplicate"), "{reason}")
        }
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
    assert_eq!(env.sandbox.meta_state().page_posts.len(), 1);

    // A timeout without effect is also unknown to Herald (it cannot tell); nothing is found.
    env.fault(MetaEndpoint::PageFeed, Fault::Timeout { secs: 2.0 });
    assert!(matches!(
        env.post(&token, &text("timed out")).await,
        Err(PostError::OutcomeUnknown(_))
    ));

    env.fault(
        MetaEndpoint::PageFeed,
        Fault::RateLimited {
            retry_after_secs: 120,
        },
    );
    let f = failed(env.post(&token, &text("throttled")).await);
    assert_eq!(
        (f.class, f.code.as_str()),
        (ErrorClass::RateLimited, "graph_80001")
    );
    let wait = f.not_before.expect("the wait from the BUC header") - Utc::now();
    assert!(
        wait > TimeDelta::seconds(100) && wait <= TimeDelta::minutes(2),
        "{wait}"
    );

    env.fault(MetaEndpoint::PageFeed, Fault::ServerError { status: 500 });
    assert_eq!(
        failed(env.post(&token, &text("5xx")).await).class,
        ErrorClass::Retryable
    );

    env.fault(
        MetaEndpoint::PageFeed,
        Fault::ContentRejected {
            detail: "Blocked".into(),
        },
    );
    let f = failed(env.post(&token, &text("rejected")).await);
    assert_eq!(
        (f.class, f.code.as_str()),
        (ErrorClass::Permanent, "graph_368")
    );
    assert!(f.message.contains("change the post"), "{}", f.message);

    env.fault(MetaEndpoint::PageFeed, Fault::ExpireToken);
    let f = failed(env.post(&token, &text("expired")).await);
    assert_eq!(
        (f.class, f.code.as_str()),
        (ErrorClass::Auth, "graph_190_463")
    );

    // Herald's own gate refuses before any call.
    let refused = env
        .adapter
        .create_post(
            &token,
            &text("gated"),
            &Gate {
                refuse_until: Some(Utc::now() + TimeDelta::minutes(5)),
                ..Gate::default()
            },
        )
        .await;
    assert!(matches!(refused, Err(PostError::Failed(f)) if f.class == ErrorClass::RateLimited));

    // Media Facebook cannot use.
    let page = env.page("fb_erin").await;
    let token = self::token(&page);
    let progress = Progress::default();
    env.fault(MetaEndpoint::PagePhotos, Fault::RejectMedia);
    let f = env
        .upload(
            &token,
            &env.media("bad.jpg", 10),
            &text(""),
            None,
            &progress,
        )
        .await
        .unwrap_err();
    assert_eq!(
        (f.class, f.code.as_str()),
        (ErrorClass::Permanent, "graph_324")
    );
    let missing = MediaItem {
        url: format!("{}/nothing.jpg", env.sandbox.base_url()),
        kind: MediaKind::Image,
        mime_type: "image/jpeg".into(),
        probe: None,
    };
    let f = env
        .upload(&token, &missing, &text(""), None, &progress)
        .await
        .unwrap_err();
    assert_eq!(f.class, ErrorClass::Permanent);
    // A video Facebook fails to process.
    let mut clip = text("broken clip");
    clip.account = page.profile.clone();
    env.fault(MetaEndpoint::VideoFinish, Fault::RejectMedia);
    clip.media_ids = vec![env
        .upload(
            &token,
            &env.media("broken.mp4", 500),
            &clip,
            None,
            &Progress::default(),
        )
        .await
        .unwrap()];
    let f = failed(env.post(&token, &clip).await);
    assert_eq!(
        (f.class, f.code.as_str()),
        (ErrorClass::Permanent, "video_processing_failed")
    );
    env.sandbox.stop().await;
}

/// Page tokens outlive the login, but renewing one needs the long-lived user token, which
/// expires after about 60 days: then the person must log in again, and Herald says so.
#[tokio::test]
async fn once_the_login_expires_a_page_token_cannot_be_renewed() {
    let env = Env::start_with(|c| c.meta.long_lived_lifetime = Duration::from_millis(300)).await;
    let page = env.page("fb_expiring").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let token = token(&page);
    env.post(&token, &text("the Page token still works"))
        .await
        .expect("Page tokens made from a long-lived login do not expire");
    let grant = page.grant.as_ref().unwrap();
    let error = env
        .adapter
        .refresh(&page.profile, grant.refresh_token.as_ref().unwrap())
        .await
        .unwrap_err();
    assert_eq!(error.class, ErrorClass::ReauthorizationRequired);
    assert!(error.message.contains("expired"), "{}", error.message);
    assert!(
        error.message.contains("connect your Facebook Pages again"),
        "{}",
        error.message
    );
    env.sandbox.stop().await;
}

/// A Page grant an older Herald stored (the renewal handle with the Page id) still publishes
/// and renews; the renewal stores the plain user token. Publishing a video takes the Page id
/// from the account, without asking Facebook who the token is.
#[tokio::test]
async fn an_old_page_grant_still_publishes_and_renews_to_the_new_form() {
    let env = Env::start().await;
    let login = env.login("fb_legacy", "").await;
    let page = env.adapter.accounts(&login).await.unwrap().remove(0);
    let grant = page.grant.clone().unwrap();
    let old_form = TokenGrant {
        refresh_token: Some(Secret::new(
            serde_json::json!({
                "page_id": page.profile.account_id,
                "user_token": login.access_token.expose(),
            })
            .to_string(),
        )),
        ..grant.clone()
    };
    let read = env.adapter.current_form(old_form);
    assert_eq!(read, grant);
    env.post(&read.access_token, &text("from an old entry"))
        .await
        .unwrap();
    let renewed = env
        .adapter
        .refresh(&page.profile, read.refresh_token.as_ref().unwrap())
        .await
        .unwrap();
    assert!(!renewed
        .refresh_token
        .as_ref()
        .unwrap()
        .expose()
        .contains('{'));

    let before = env.sandbox.meta_state().requests.len();
    let mut clip = text("a clip");
    clip.account = page.profile.clone();
    let item = env.media("legacy.mp4", 1500);
    let reference = env
        .upload(
            &renewed.access_token,
            &item,
            &clip,
            None,
            &Progress::default(),
        )
        .await
        .unwrap();
    clip.media_ids = vec![reference];
    env.post(&renewed.access_token, &clip).await.unwrap();
    let state = env.sandbox.meta_state();
    assert_eq!(state.videos[0].page_id, page.profile.account_id);
    let lookups: Vec<_> = state.requests[before..]
        .iter()
        .filter(|r| r.path.ends_with("/me"))
        .collect();
    assert!(lookups.is_empty(), "no /me before publishing: {lookups:?}");
    env.sandbox.stop().await;
}

/// A Page's business-use-case budget is the Page's own: once Meta says it is spent (usage at
/// 100 % and the minutes until access is back), that Page waits in every worker without calling,
/// while another Page of the same app goes on.
#[tokio::test]
async fn a_spent_page_budget_holds_that_page_only() {
    use herald_domain::Platform;
    use herald_infrastructure::rate_limit::SharedRateLimits;
    let env = Env::start_with(|config| config.meta.call_budget = 6).await;
    let busy = env.page("fb_busy").await;
    let calm = env.page("fb_calm").await;
    let path = std::env::temp_dir().join(format!(
        "herald_meta_limits_{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let db = herald_infrastructure::db::Db::connect(&format!("sqlite://{}", path.display()), 4)
        .await
        .unwrap();
    let gate = |account: &ConnectedAccount| {
        SharedRateLimits::new(
            db.clone(),
            Platform::FacebookPages,
            &account.profile.account_id,
        )
    };
    let (busy_gate, other_worker) = (gate(&busy), gate(&busy));
    let mut refused = None;
    for i in 0..10 {
        match env
            .adapter
            .create_post(&token(&busy), &text(&format!("busy {i}")), &busy_gate)
            .await
        {
            Ok(_) => {}
            Err(PostError::Failed(f)) => {
                refused = Some(f);
                break;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    let refused = refused.expect("the Page's budget runs out");
    assert_eq!(
        refused.code, "rate_limit_exhausted",
        "Herald held it back: {refused:?}"
    );
    let back = refused.not_before.unwrap();
    assert!(
        back > Utc::now() + TimeDelta::seconds(50),
        "Meta's minute: {back}"
    );
    let before = env.sandbox.meta_state().requests.len();
    let again = failed(
        env.adapter
            .create_post(&token(&busy), &text("another worker"), &other_worker)
            .await
            .map(|p| p.post_id),
    );
    assert_eq!(again.code, "rate_limit_exhausted");
    assert_eq!(
        env.sandbox.meta_state().requests.len(),
        before,
        "nothing sent"
    );
    env.adapter
        .create_post(&token(&calm), &text("calm"), &gate(&calm))
        .await
        .expect("another Page of the app goes on");
    let state = env.sandbox.meta_state();
    assert!(
        state.usage_events.iter().all(|e| !e.refused),
        "Meta never refused: {:?}",
        state.usage_events
    );
    env.sandbox.stop().await;
}

/// The grant says whose login it is; revoking takes every permission the person granted back
/// at Facebook (with the user token), after which the Page token cannot publish. A grant from
/// before Herald recorded the person is not revoked: another login of theirs may still use it.
#[tokio::test]
async fn revoking_takes_the_persons_permissions_back() {
    let env = Env::start().await;
    let page = env.page("fb_revoking").await;
    let grant = page.grant.clone().unwrap();
    let state = env.sandbox.meta_state();
    let person = state
        .users
        .iter()
        .find(|u| u.username == "fb_revoking")
        .unwrap();
    assert_eq!(
        grant.login_id.as_deref(),
        Some(format!("facebook:{}", person.id).as_str())
    );

    let legacy = TokenGrant {
        login_id: None,
        ..grant.clone()
    };
    env.adapter.revoke(&page.profile, &legacy).await.unwrap();
    assert!(env.sandbox.meta_state().revoked_permissions.is_empty());
    env.post(&grant.access_token, &text("still connected"))
        .await
        .unwrap();

    env.adapter.revoke(&page.profile, &grant).await.unwrap();
    let state = env.sandbox.meta_state();
    let mut revoked: Vec<&str> = state
        .revoked_permissions
        .iter()
        .map(|r| {
            assert_eq!(r.user_id, person.id);
            r.permission.as_str()
        })
        .collect();
    revoked.sort_unstable();
    assert_eq!(
        revoked,
        [
            "pages_manage_posts",
            "pages_read_engagement",
            "pages_show_list"
        ]
    );
    let revocations: Vec<_> = state
        .requests
        .iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert!(
        revocations
            .iter()
            .all(|r| r.path.contains(&format!("/{}/permissions/", person.id))),
        "{revocations:?}"
    );
    let refused = failed(env.post(&grant.access_token, &text("after revoking")).await);
    assert_eq!(refused.class, ErrorClass::Permanent, "{refused:?}");
    env.sandbox.stop().await;
}

const MIB: u64 = 1024 * 1024;

impl Env {
    /// A vertical MP4 the sandbox serves (1080x1920, 10 s), `bytes` long.
    fn reel_media(&self, name: &str, bytes: u64) -> MediaItem {
        MediaItem {
            url: format!(
                "{}/media/{name}?bytes={bytes}&width=1080&height=1920&duration_ms=10000",
                self.sandbox.base_url()
            ),
            ..self.media(name, bytes)
        }
    }

    fn reel_calls(&self) -> usize {
        self.sandbox
            .meta_state()
            .requests
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/video_reels"))
            .count()
    }
}

/// A reel draft on `page`.
fn reel_draft(page: &ConnectedAccount, text: &str) -> PostDraft {
    let mut draft = PostDraft {
        text: text.to_owned(),
        account: page.profile.clone(),
        ..PostDraft::default()
    };
    draft.options.facebook_pages.placement = Some("reels".into());
    draft
}

/// Progress that injects a fault into the sandbox's reel uploads once the first chunk is in:
/// the upload is cut off after it.
struct InterruptAfterFirstChunk<'a> {
    progress: &'a Progress,
    sandbox: &'a Sandbox,
    fault: Mutex<Option<Fault>>,
}

#[async_trait::async_trait]
impl UploadProgress for InterruptAfterFirstChunk<'_> {
    async fn started(&self, total_bytes: u64) {
        self.progress.started(total_bytes).await;
    }

    async fn session_opened(&self, session: &Secret) {
        self.progress.session_opened(session).await;
    }

    async fn chunk_sent(&self, bytes_sent: u64, total_bytes: u64) {
        self.progress.chunk_sent(bytes_sent, total_bytes).await;
        if let Some(fault) = self.fault.lock().unwrap().take() {
            self.sandbox
                .inject_meta_fault(MetaEndpoint::ReelUpload, fault, 1);
        }
    }
}

#[tokio::test]
async fn a_reel_is_uploaded_to_rupload_and_published_once() {
    let env = Env::start().await;
    let page = env.page("fb_reel").await;
    let token = token(&page);
    let mut draft = reel_draft(&page, "A reel from Herald");
    let size = 2 * MIB + 300;
    let item = env.reel_media("reel.mp4", size);
    let progress = Progress::default();
    let reference = env
        .upload(&token, &item, &draft, None, &progress)
        .await
        .unwrap();
    assert!(reference.starts_with("reel:"), "{reference}");
    assert_eq!(*progress.started.lock().unwrap(), vec![size]);
    assert_eq!(
        *progress.confirmed.lock().unwrap(),
        vec![MIB, 2 * MIB, size],
        "each chunk confirmed and recorded"
    );
    let state = env.sandbox.meta_state();
    let offsets: Vec<Option<u64>> = state.reel_uploads.iter().map(|u| u.offset).collect();
    assert_eq!(offsets, [Some(0), Some(MIB), Some(2 * MIB)]);
    assert!(state.reel_uploads.iter().all(|u| u.accepted));
    let video = &state.videos[0];
    assert!(video.reel);
    assert_eq!((video.bytes_received, video.file_size), (size, size));
    assert_eq!(video.post_id, None, "uploaded, not published yet");
    assert_eq!(env.reel_calls(), 1, "start only");

    draft.media_ids = vec![reference];
    let created = env
        .adapter
        .create_post(&token, &draft, &Gate::default())
        .await
        .unwrap();
    let state = env.sandbox.meta_state();
    let video = &state.videos[0];
    assert_eq!(
        created.post_id,
        format!("{}_{}", page.profile.account_id, video.id)
    );
    assert!(
        created.url.ends_with(&format!("/reel/{}/", video.id)),
        "{}",
        created.url
    );
    assert_eq!(video.status, "ready", "published once processed");
    assert_eq!(video.description.as_deref(), Some("A reel from Herald"));
    assert_eq!(env.reel_calls(), 2, "start, then one finish");

    // A retry after an unknown outcome finds the reel and does not publish it again.
    let found = env
        .adapter
        .find_post(
            &token,
            Utc::now() - TimeDelta::minutes(5),
            &draft,
            &Gate::default(),
        )
        .await
        .unwrap();
    assert_eq!(found.map(|p| p.post_id), Some(created.post_id.clone()));
    let again = env
        .adapter
        .create_post(&token, &draft, &Gate::default())
        .await
        .unwrap();
    assert_eq!(again, created);
    assert_eq!(env.reel_calls(), 2, "no second finish");
    assert_eq!(
        env.sandbox.meta_state().page_posts.len(),
        0,
        "a reel, not a feed post"
    );
    env.sandbox.stop().await;
}

#[tokio::test]
async fn an_interrupted_reel_upload_resumes_from_the_bytes_meta_holds() {
    let env = Env::start().await;
    let page = env.page("fb_reel_resume").await;
    let token = token(&page);
    let draft = reel_draft(&page, "Resumed reel");
    let size = 3 * MIB;
    let item = env.reel_media("resume-reel.mp4", size);
    let progress = Progress::default();
    let interrupting = InterruptAfterFirstChunk {
        progress: &progress,
        sandbox: &env.sandbox,
        fault: Mutex::new(Some(Fault::ServerError { status: 503 })),
    };
    let upload = MediaUpload::single(&item, &draft);
    let failure = env
        .adapter
        .upload_media(&token, &upload, &Gate::default(), &interrupting)
        .await
        .unwrap_err();
    assert_eq!(failure.class, ErrorClass::Retryable, "{}", failure.message);
    assert_eq!(*progress.confirmed.lock().unwrap(), vec![MIB]);

    // The worker died before recording the first chunk: Herald's record says 0, Meta says it
    // holds 1 MiB, and Meta is right.
    let resume = UploadResume {
        session: progress.session.lock().unwrap().clone().unwrap(),
        bytes_confirmed: 0,
    };
    let again = Progress::default();
    let reference = env
        .upload(&token, &item, &draft, Some(&resume), &again)
        .await
        .unwrap();
    assert_eq!(*again.confirmed.lock().unwrap(), vec![2 * MIB, 3 * MIB]);
    let state = env.sandbox.meta_state();
    let sent: Vec<(Option<u64>, bool)> = state
        .reel_uploads
        .iter()
        .map(|u| (u.offset, u.accepted))
        .collect();
    assert_eq!(
        sent,
        [
            (Some(0), true),
            (Some(MIB), false),
            (Some(MIB), true),
            (Some(2 * MIB), true)
        ],
        "no range was taken twice"
    );
    assert_eq!(state.videos.len(), 1, "the same reel, resumed");
    assert_eq!(state.videos[0].bytes_received, size);

    // Resuming a reel whose bytes are all in sends nothing more.
    let resume = UploadResume {
        session: resume.session.clone(),
        bytes_confirmed: MIB,
    };
    let same = env
        .upload(&token, &item, &draft, Some(&resume), &Progress::default())
        .await
        .unwrap();
    assert_eq!(same, reference);
    assert_eq!(env.sandbox.meta_state().reel_uploads.len(), 4);
    env.sandbox.stop().await;
}

#[tokio::test]
async fn a_reel_that_meta_cannot_process_fails_with_what_to_check() {
    let env = Env::start().await;
    let page = env.page("fb_reel_reject").await;
    let token = token(&page);
    let mut draft = reel_draft(&page, "Rejected reel");
    let item = env.reel_media("bad-reel.mp4", 5000);
    draft.media_ids = vec![env
        .upload(&token, &item, &draft, None, &Progress::default())
        .await
        .unwrap()];
    env.fault(MetaEndpoint::ReelFinish, Fault::RejectMedia);
    let failure = failed(env.post(&token, &draft).await);
    assert_eq!(failure.class, ErrorClass::Permanent);
    assert_eq!(failure.code, "reel_processing_failed");
    assert!(failure.message.contains("9:16"), "{}", failure.message);

    // A photo is no reel.
    let photo = env.media("p.jpg", 100);
    let refused = env
        .upload(&token, &photo, &draft, None, &Progress::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code, "reel_not_one_video");
    env.sandbox.stop().await;
}

/// The 30 reels per 24 hours, counted across workers through the shared gate (two pools on one
/// database): past the limit a reel is refused before any upload, with when a slot frees.
#[tokio::test]
async fn the_pages_reels_of_24_hours_are_counted_across_workers() {
    use herald_domain::Platform;
    use herald_infrastructure::db::Db;
    use herald_infrastructure::rate_limit::SharedRateLimits;

    let env = Env::start_with(|c| c.meta.reel_quota_total = 30).await;
    let page = env.page("fb_reel_quota").await;
    let token = token(&page);
    let dir = std::env::temp_dir().join(format!("herald-reels-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("q.db").display());
    let workers = [
        SharedRateLimits::new(
            Db::connect(&url, 2).await.unwrap(),
            Platform::FacebookPages,
            &page.profile.account_id,
        ),
        SharedRateLimits::new(
            Db::connect(&url, 2).await.unwrap(),
            Platform::FacebookPages,
            &page.profile.account_id,
        ),
    ];
    let mut config = env.adapter.config().clone();
    config.reels_per_day = 2;
    let adapter = FacebookPagesAdapter::new(config).unwrap();
    for n in 0..2 {
        let gate = &workers[n % 2];
        let mut draft = reel_draft(&page, &format!("reel {n}"));
        let item = env.reel_media(&format!("q{n}.mp4"), 4000);
        let upload = MediaUpload::single(&item, &draft);
        let reference = adapter
            .upload_media(&token, &upload, gate, &Progress::default())
            .await
            .unwrap();
        draft.media_ids = vec![reference];
        adapter.create_post(&token, &draft, gate).await.unwrap();
    }
    let uploads = env.sandbox.meta_state().reel_uploads.len();
    let draft = reel_draft(&page, "one too many");
    let item = env.reel_media("q2.mp4", 4000);
    let upload = MediaUpload::single(&item, &draft);
    let before = Utc::now();
    for gate in &workers {
        let refused = adapter
            .upload_media(&token, &upload, gate, &Progress::default())
            .await
            .unwrap_err();
        assert_eq!(
            refused.class,
            ErrorClass::RateLimited,
            "{}",
            refused.message
        );
        assert!(
            refused
                .message
                .contains("used its 2 API-published reels of the last 24 hours"),
            "{}",
            refused.message
        );
        let free_at = refused.not_before.expect("when a slot frees");
        assert!(
            free_at > before + TimeDelta::hours(24) - TimeDelta::minutes(1),
            "the oldest reel leaves the window in a day: {free_at}"
        );
        assert!(free_at < before + TimeDelta::hours(25), "{free_at}");
    }
    let state = env.sandbox.meta_state();
    assert_eq!(
        state.reel_uploads.len(),
        uploads,
        "nothing uploaded past the limit"
    );
    assert_eq!(state.reel_quota_refusals, 0, "Meta never had to refuse");
    assert_eq!(
        state.videos.iter().filter(|v| v.post_id.is_some()).count(),
        2
    );
    env.sandbox.stop().await;
}

/// Meta refuses a reel past its limit (reels made elsewhere count too): the job waits like
/// for any rate limit, and the refused reel's slot is free again.
#[tokio::test]
async fn metas_own_reel_limit_refusal_is_a_rate_limit() {
    let env = Env::start_with(|c| c.meta.reel_quota_total = 0).await;
    let page = env.page("fb_reel_meta_limit").await;
    let token = token(&page);
    let mut draft = reel_draft(&page, "refused by Meta");
    let item = env.reel_media("m.mp4", 4000);
    draft.media_ids = vec![env
        .upload(&token, &item, &draft, None, &Progress::default())
        .await
        .unwrap()];
    let failure = failed(env.post(&token, &draft).await);
    assert_eq!(
        failure.class,
        ErrorClass::RateLimited,
        "{}",
        failure.message
    );
    assert_eq!(env.sandbox.meta_state().reel_quota_refusals, 1);
    env.sandbox.stop().await;
}
