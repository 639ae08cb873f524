//! The Instagram adapter against the sandbox's Meta twin over real HTTP: one Facebook login
//! connects the linked business account (and explains when there is none); images, reels,
//! stories and carousels; the live publishing quota; reconciliation; and the failure classes.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use herald_domain::{ErrorClass, MediaItem, MediaKind, Platform, PlatformFailure, PublishOptions};
use herald_infrastructure::db::Db;
use herald_infrastructure::media_source::MediaUrlPolicy;
use herald_infrastructure::platforms::instagram::{InstagramAdapter, InstagramConfig, VideoUpload};
use herald_infrastructure::platforms::{
    ConnectedAccount, MediaUpload, PlatformAdapter, PostDraft, PostError, RateLimitGate,
    TokenGrant, UploadProgress, UploadResume,
};
use herald_infrastructure::rate_limit::SharedRateLimits;
use herald_infrastructure::secret::Secret;
use herald_sandbox::{Fault, MetaEndpoint, MetaPageSpec, MetaUserSpec, Sandbox, SandboxConfig};
use url::Url;

const REDIRECT: &str = "http://127.0.0.1:9/callback";

struct Env {
    sandbox: Sandbox,
    adapter: InstagramAdapter,
}

impl Env {
    async fn start(adjust: impl FnOnce(&mut SandboxConfig), quota_cap: Option<u32>) -> Self {
        let mut sandbox_config = SandboxConfig::default();
        sandbox_config.meta.ig_video_processing_delay = Duration::from_millis(300);
        adjust(&mut sandbox_config);
        let sandbox = Sandbox::start("127.0.0.1:0", sandbox_config)
            .await
            .expect("sandbox starts");
        let defaults = SandboxConfig::default().meta;
        let mut config = InstagramConfig::for_base(
            Url::parse(&sandbox.meta_base_url()).unwrap(),
            defaults.client_id,
            Secret::new(defaults.client_secret),
        );
        config.graph.request_timeout = Duration::from_secs(1);
        config.status_poll_interval = Duration::from_millis(50);
        config.publish_quota_cap = quota_cap;
        // The sandbox serves the media on loopback.
        config.media_policy = MediaUrlPolicy::new(true, "");
        Self {
            adapter: InstagramAdapter::new(config).expect("adapter builds"),
            sandbox,
        }
    }

    async fn login(&self, user: &str, decline: &str) -> TokenGrant {
        let start = self.adapter.authorization_url(REDIRECT);
        assert!(start.url.query_pairs().any(|(k, v)| k == "scope"
            && v.contains("instagram_content_publish")
            && v.contains("pages_show_list")));
        let url = format!(
            "{}&sandbox_user={user}&sandbox_decline={decline}",
            start.url
        );
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let consent = browser.get(url).send().await.unwrap();
        assert_eq!(consent.status(), 302);
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

    async fn account(&self, user: &str) -> ConnectedAccount {
        let login = self.login(user, "").await;
        self.adapter.accounts(&login).await.unwrap().remove(0)
    }

    fn media_url(&self, name: &str, bytes: u64) -> String {
        format!("{}/media/{name}?bytes={bytes}", self.sandbox.base_url())
    }

    /// A draft by `account` whose media went through `upload_media`.
    async fn draft(
        &self,
        account: &ConnectedAccount,
        text: &str,
        media: &[&str],
        placement: Option<&str>,
    ) -> PostDraft {
        let mut options = PublishOptions::default();
        options.instagram.placement = placement.map(str::to_owned);
        let items: Vec<MediaItem> = media
            .iter()
            .map(|name| {
                let video = name.ends_with(".mp4");
                MediaItem {
                    url: self.media_url(name, 2000),
                    kind: if video {
                        MediaKind::Video
                    } else {
                        MediaKind::Image
                    },
                    mime_type: if video { "video/mp4" } else { "image/jpeg" }.into(),
                    probe: None,
                }
            })
            .collect();
        let token = &token(account);
        let mut draft = PostDraft {
            account: account.profile.clone(),
            text: text.to_owned(),
            media: items.clone(),
            options,
            ..PostDraft::default()
        };
        for (index, item) in items.iter().enumerate() {
            let upload = MediaUpload {
                index,
                count: items.len(),
                ..MediaUpload::single(item, &draft)
            };
            let reference = self
                .adapter
                .upload_media(token, &upload, &Gate::default(), &Progress)
                .await
                .unwrap();
            draft.media_ids.push(reference);
        }
        draft
    }

    fn fault(&self, endpoint: MetaEndpoint, fault: Fault) {
        self.sandbox.inject_meta_fault(endpoint, fault, 1);
    }

    fn publish_calls(&self) -> usize {
        self.sandbox
            .meta_state()
            .requests
            .iter()
            .filter(|r| r.path.ends_with("/media_publish"))
            .count()
    }
}

fn token(account: &ConnectedAccount) -> Secret {
    account.grant.as_ref().unwrap().access_token.clone()
}

fn failed(result: Result<impl std::fmt::Debug, PostError>) -> PlatformFailure {
    match result {
        Err(PostError::Failed(f)) => f,
        other => panic!("expected a failure, got {other:?}"),
    }
}

type Observation = (String, Option<u64>, Option<DateTime<Utc>>);

#[derive(Default)]
struct Gate {
    acquired: Mutex<Vec<String>>,
    observed: Mutex<Vec<Observation>>,
}

#[async_trait::async_trait]
impl RateLimitGate for Gate {
    async fn acquire(&self, endpoint: &str) -> Result<(), DateTime<Utc>> {
        self.acquired.lock().unwrap().push(endpoint.to_owned());
        Ok(())
    }

    async fn observe(&self, endpoint: &str, remaining: Option<u64>, reset: Option<DateTime<Utc>>) {
        self.observed
            .lock()
            .unwrap()
            .push((endpoint.to_owned(), remaining, reset));
    }
}

struct Progress;

#[async_trait::async_trait]
impl UploadProgress for Progress {
    async fn started(&self, _total_bytes: u64) {}
    async fn session_opened(&self, _session: &Secret) {}
    async fn chunk_sent(&self, _bytes_sent: u64, _total_bytes: u64) {}
}

#[tokio::test]
async fn a_facebook_login_connects_the_linked_business_account() {
    let env = Env::start(|_| {}, None).await;
    let login = env.login("ig_alice", "").await;
    let accounts = env.adapter.accounts(&login).await.unwrap();
    assert_eq!(
        accounts.len(),
        1,
        "only the first Page has an account linked"
    );
    let account = &accounts[0];
    assert_eq!(account.profile.username, "ig_alice_ig");
    let state = env.sandbox.meta_state();
    assert_eq!(state.instagram_accounts[0].id, account.profile.account_id);
    let grant = account.grant.as_ref().unwrap();
    let issued = state
        .tokens_issued
        .iter()
        .find(|t| t.access_token == grant.access_token.expose())
        .unwrap();
    assert_eq!(issued.kind, "page", "the linked Page's token");
    assert_eq!(grant.expires_at, None);
    let me = env.adapter.account(&grant.access_token).await.unwrap();
    assert_eq!(me, account.profile);
    // Renewal finds the Page linked to the account: the grant keeps only the user token.
    assert_eq!(grant.refresh_token.as_ref(), Some(&login.access_token));
    let renewed = env
        .adapter
        .refresh(&account.profile, grant.refresh_token.as_ref().unwrap())
        .await
        .unwrap();
    assert_eq!(
        env.adapter.account(&renewed.access_token).await.unwrap(),
        account.profile
    );

    // Only a personal account (nothing linked): say how to fix it.
    env.sandbox.define_meta_user(&MetaUserSpec {
        username: "ig_personal".into(),
        name: None,
        pages: vec![MetaPageSpec {
            name: "Bakery".into(),
            category: None,
            tasks: None,
            instagram_business_account: None,
        }],
    });
    let personal = env.login("ig_personal", "").await;
    let error = env.adapter.accounts(&personal).await.unwrap_err();
    assert_eq!(error.code, "no_instagram_business_account");
    for words in [
        "Bakery",
        "professional account (Business or Creator)",
        "link it",
    ] {
        assert!(error.message.contains(words), "{}", error.message);
    }
    let declined = env.login("ig_alice", "instagram_content_publish").await;
    let error = env.adapter.accounts(&declined).await.unwrap_err();
    assert!(
        error.message.contains("instagram_content_publish"),
        "{}",
        error.message
    );
    env.sandbox.stop().await;
}

#[tokio::test]
async fn publishes_images_reels_stories_and_carousels_once() {
    let env = Env::start(|sandbox| sandbox.meta.ig_quota_total = 20, None).await;
    let account = env.account("ig_bob").await;
    let token = token(&account);
    let gate = Gate::default();

    let image = env.draft(&account, "One #photo", &["a.jpg"], None).await;
    assert_eq!(
        image.media_ids[0],
        format!("image:{}", env.media_url("a.jpg", 2000))
    );
    let before = env.sandbox.meta_state().requests.len();
    let created = env
        .adapter
        .create_post(&token, &image, &gate)
        .await
        .unwrap();
    let state = env.sandbox.meta_state();
    // The Instagram account is the connection's: no `/me` lookup before publishing.
    let lookups: Vec<_> = state.requests[before..]
        .iter()
        .filter(|r| r.path.ends_with("/me"))
        .collect();
    assert!(lookups.is_empty(), "{lookups:?}");
    assert_eq!(state.instagram_media.len(), 1);
    assert_eq!(state.instagram_media[0].id, created.post_id);
    assert_eq!(state.instagram_media[0].caption, "One #photo");
    assert_eq!(created.url, state.instagram_media[0].permalink);
    let observed = gate.observed.lock().unwrap().clone();
    assert!(
        observed
            .iter()
            .any(|(key, left, _)| key == "instagram_publishing_quota" && *left == Some(19)),
        "the live quota is shared: {observed:?}"
    );

    for draft in [
        env.draft(&account, "A feed video", &["v.mp4"], None).await,
        env.draft(&account, "A reel", &["r.mp4"], Some("reels"))
            .await,
        env.draft(&account, "ignored caption", &["s.jpg"], Some("stories"))
            .await,
        env.draft(&account, "", &["s.mp4"], Some("stories")).await,
        env.draft(&account, "An album", &["c1.jpg", "c2.mp4", "c3.jpg"], None)
            .await,
    ] {
        env.adapter
            .create_post(&token, &draft, &Gate::default())
            .await
            .unwrap();
    }
    let state = env.sandbox.meta_state();
    let kinds: Vec<(&str, &str)> = state
        .instagram_media
        .iter()
        .map(|m| (m.media_type.as_str(), m.media_product_type.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("IMAGE", "FEED"),
            ("VIDEO", "REELS"),
            ("VIDEO", "REELS"),
            ("IMAGE", "STORY"),
            ("VIDEO", "STORY"),
            ("CAROUSEL_ALBUM", "FEED"),
        ]
    );
    assert!(state
        .containers
        .iter()
        .any(|c| c.media_type == "REELS" && c.share_to_feed));
    assert_eq!(
        state.instagram_media[3].caption, "",
        "stories carry no caption"
    );
    let album = &state.instagram_media[5];
    assert_eq!(album.media_urls.len(), 3);
    assert!(album.media_urls[0].contains("c1.jpg"));
    assert!(album.media_urls[1].ends_with(".mp4"), "{album:?}");
    // Every video went up through rupload, in one request each (2000 bytes, 1 MiB chunks).
    let uploaded: Vec<_> = state
        .containers
        .iter()
        .filter(|c| c.upload_type.as_deref() == Some("resumable"))
        .collect();
    assert_eq!(uploaded.len(), 4, "{uploaded:?}");
    assert!(uploaded
        .iter()
        .all(|c| c.bytes_received == 2000 && c.video_url.is_none()));
    assert_eq!(state.ig_uploads.len(), 4);
    assert_eq!(env.publish_calls(), 6, "one media_publish per post");
    env.sandbox.stop().await;
}

#[tokio::test]
async fn the_publishing_quota_is_read_live_and_respected() {
    let env = Env::start(|sandbox| sandbox.meta.ig_quota_total = 2, None).await;
    let account = env.account("ig_quota").await;
    let token = token(&account);
    for n in 0..2 {
        let draft = env
            .draft(&account, &format!("post {n}"), &["q.jpg"], None)
            .await;
        env.adapter
            .create_post(&token, &draft, &Gate::default())
            .await
            .unwrap();
    }
    let gate = Gate::default();
    let draft = env.draft(&account, "one too many", &["q.jpg"], None).await;
    let f = failed(env.adapter.create_post(&token, &draft, &gate).await);
    assert_eq!(
        (f.class, f.code.as_str()),
        (ErrorClass::RateLimited, "publishing_quota")
    );
    assert!(f.message.contains("2 API-published posts"), "{}", f.message);
    let first = env.sandbox.meta_state().instagram_media[0]
        .timestamp
        .clone();
    let first = DateTime::parse_from_rfc3339(&first)
        .unwrap()
        .with_timezone(&Utc);
    let until = f.not_before.expect("when a slot frees");
    assert!(
        (until - (first + TimeDelta::hours(24))).num_seconds().abs() <= 2,
        "{until} vs {first}"
    );
    assert_eq!(
        env.publish_calls(),
        2,
        "Herald did not call media_publish past the quota"
    );
    assert!(gate
        .observed
        .lock()
        .unwrap()
        .iter()
        .any(|(key, left, at)| key == "instagram_publishing_quota"
            && *left == Some(0)
            && *at == Some(until)));

    // A configured cap below Meta's figure wins.
    let env = Env::start(|sandbox| sandbox.meta.ig_quota_total = 100, Some(1)).await;
    let account = env.account("ig_capped").await;
    let token = self::token(&account);
    let draft = env.draft(&account, "first", &["q.jpg"], None).await;
    env.adapter
        .create_post(&token, &draft, &Gate::default())
        .await
        .unwrap();
    let f = failed(
        env.adapter
            .create_post(&token, &draft, &Gate::default())
            .await,
    );
    assert_eq!(f.class, ErrorClass::RateLimited);
    env.sandbox.stop().await;
}

#[tokio::test]
async fn failures_are_classified_with_what_to_do() {
    let env = Env::start(|_| {}, None).await;
    let account = env.account("ig_dave").await;
    let token = token(&account);
    let since = Utc::now();

    // The publish answer is lost: reconciliation finds the media by its caption.
    let draft = env.draft(&account, "lost answer", &["l.jpg"], None).await;
    env.fault(
        MetaEndpoint::IgPublish,
        Fault::TimeoutAfterSuccess { secs: 2.0 },
    );
    assert!(matches!(
        env.adapter
            .create_post(&token, &draft, &Gate::default())
            .await,
        Err(PostError::OutcomeUnknown(_))
    ));
    let found = env
        .adapter
        .find_post(&token, since, &draft, &Gate::default())
        .await
        .unwrap()
        .expect("found");
    assert_eq!(
        found.post_id,
        env.sandbox.meta_state().instagram_media[0].id
    );
    assert!(found.url.starts_with("https://www.instagram.com/p/"));
    let other = env.draft(&account, "never posted", &["l.jpg"], None).await;
    assert!(env
        .adapter
        .find_post(&token, since, &other, &Gate::default())
        .await
        .unwrap()
        .is_none());

    // Refusals before the irreversible call.
    let png = PostDraft {
        media_ids: vec![format!("image:{}", env.media_url("a.png", 10))],
        ..draft.clone()
    };
    let f = failed(
        env.adapter
            .create_post(&token, &png, &Gate::default())
            .await,
    );
    assert_eq!(
        (f.class, f.code.as_str()),
        (ErrorClass::Permanent, "graph_36001_2207005")
    );
    assert!(f.message.contains("use a JPEG"), "{}", f.message);
    let missing = PostDraft {
        media_ids: vec![format!("image:{}/gone.jpg", env.sandbox.base_url())],
        ..draft.clone()
    };
    let f = failed(
        env.adapter
            .create_post(&token, &missing, &Gate::default())
            .await,
    );
    assert_eq!(f.code, "graph_9004_2207052");
    assert!(f.message.contains("make the URL public"), "{}", f.message);
    env.fault(MetaEndpoint::IgCreateContainer, Fault::RejectMedia);
    let reel = env
        .draft(&account, "bad reel", &["bad.mp4"], Some("reels"))
        .await;
    let f = failed(
        env.adapter
            .create_post(&token, &reel, &Gate::default())
            .await,
    );
    assert_eq!(
        (f.class, f.code.as_str()),
        (ErrorClass::Permanent, "container_error_2207026")
    );
    assert!(f.message.contains("MP4 or MOV"), "{}", f.message);

    // Refusals of media_publish.
    env.fault(
        MetaEndpoint::IgPublish,
        Fault::ContentRejected {
            detail: "spam".into(),
        },
    );
    let f = failed(
        env.adapter
            .create_post(&token, &draft, &Gate::default())
            .await,
    );
    assert_eq!(
        (f.class, f.code.as_str()),
        (ErrorClass::Permanent, "graph_4_2207051")
    );
    assert!(f.message.contains("possible spam"), "{}", f.message);
    env.fault(
        MetaEndpoint::IgPublish,
        Fault::RateLimited {
            retry_after_secs: 300,
        },
    );
    let f = failed(
        env.adapter
            .create_post(&token, &draft, &Gate::default())
            .await,
    );
    assert_eq!(
        (f.class, f.code.as_str()),
        (ErrorClass::RateLimited, "graph_80002")
    );
    assert!(f.not_before.unwrap() > Utc::now() + TimeDelta::minutes(4));
    env.fault(MetaEndpoint::IgPublish, Fault::ServerError { status: 503 });
    assert_eq!(
        failed(
            env.adapter
                .create_post(&token, &draft, &Gate::default())
                .await
        )
        .class,
        ErrorClass::Retryable
    );
    env.fault(MetaEndpoint::IgPublish, Fault::ExpireToken);
    let f = failed(
        env.adapter
            .create_post(&token, &draft, &Gate::default())
            .await,
    );
    assert_eq!(
        (f.class, f.code.as_str()),
        (ErrorClass::Auth, "graph_190_463")
    );

    // Processing slower than the wait: retry later.
    let account = env.account("ig_erin").await;
    let token = self::token(&account);
    env.fault(
        MetaEndpoint::IgCreateContainer,
        Fault::SlowProcessing { secs: 60.0 },
    );
    let slow = env.draft(&account, "slow", &["slow.mp4"], None).await;
    let env_quick = InstagramAdapter::new(InstagramConfig {
        status_poll_max_wait: Duration::from_millis(200),
        ..env.adapter.config().clone()
    })
    .unwrap();
    let f = failed(env_quick.create_post(&token, &slow, &Gate::default()).await);
    assert_eq!(
        (f.class, f.code.as_str()),
        (ErrorClass::Retryable, "container_in_progress")
    );
    assert_eq!(
        env.publish_calls(),
        5,
        "only the five calls above reached media_publish"
    );
    env.sandbox.stop().await;
}

/// What the publisher would record, and (once) a fault injected after the first chunk.
#[derive(Default)]
struct Recorder<'a> {
    sessions: Mutex<Vec<String>>,
    chunks: Mutex<Vec<u64>>,
    fail_after_first_chunk: Option<&'a Sandbox>,
}

#[async_trait::async_trait]
impl UploadProgress for Recorder<'_> {
    async fn started(&self, _total_bytes: u64) {}
    async fn session_opened(&self, session: &Secret) {
        self.sessions
            .lock()
            .unwrap()
            .push(session.expose().to_owned());
    }
    async fn chunk_sent(&self, bytes_sent: u64, _total_bytes: u64) {
        let mut chunks = self.chunks.lock().unwrap();
        if chunks.is_empty() {
            if let Some(sandbox) = self.fail_after_first_chunk {
                sandbox.inject_meta_fault(
                    MetaEndpoint::IgUpload,
                    Fault::ServerError { status: 503 },
                    1,
                );
            }
        }
        chunks.push(bytes_sent);
    }
}

impl Env {
    /// The same twin, with the adapter's configuration changed.
    fn reconfigured(self, change: impl FnOnce(&mut InstagramConfig)) -> Self {
        let mut config = self.adapter.config().clone();
        change(&mut config);
        Self {
            adapter: InstagramAdapter::new(config).unwrap(),
            ..self
        }
    }

    /// `upload_media` of the draft's only item, resuming `resume` if given.
    async fn upload(
        &self,
        token: &Secret,
        draft: &PostDraft,
        resume: Option<&UploadResume>,
        progress: &Recorder<'_>,
    ) -> Result<String, PlatformFailure> {
        let upload = MediaUpload {
            resume,
            ..MediaUpload::single(&draft.media[0], draft)
        };
        self.adapter
            .upload_media(token, &upload, &Gate::default(), progress)
            .await
    }

    /// A video of `bytes` bytes and a draft (not uploaded yet) that posts it to `placement`.
    fn video_draft(
        &self,
        account: &ConnectedAccount,
        name: &str,
        bytes: u64,
        placement: &str,
        text: &str,
    ) -> (MediaItem, PostDraft) {
        let clip = MediaItem {
            url: self.media_url(name, bytes),
            kind: MediaKind::Video,
            mime_type: "video/mp4".into(),
            probe: None,
        };
        let mut options = PublishOptions::default();
        options.instagram.placement = Some(placement.into());
        let draft = PostDraft {
            account: account.profile.clone(),
            text: text.into(),
            media: vec![clip.clone()],
            options,
            ..PostDraft::default()
        };
        (clip, draft)
    }
}

async fn checksum_of(url: &str) -> String {
    let bytes = reqwest::get(url).await.unwrap().bytes().await.unwrap();
    herald_sandbox::tiktok::checksum(&bytes)
}

#[tokio::test]
async fn a_reel_is_streamed_to_rupload_in_chunks_and_published_once() {
    let env = Env::start(|_| {}, None)
        .await
        .reconfigured(|config| config.upload_chunk_bytes = 1000);
    let account = env.account("ig_reel").await;
    let token = token(&account);
    let (clip, mut draft) =
        env.video_draft(&account, "reel.mp4", 2500, "reels", "A reel, uploaded");
    let progress = Recorder::default();
    let reference = env.upload(&token, &draft, None, &progress).await.unwrap();
    let state = env.sandbox.meta_state();
    assert_eq!(state.containers.len(), 1);
    let container = &state.containers[0];
    assert_eq!(reference, format!("container:{}", container.id));
    assert_eq!(container.media_type, "REELS");
    assert_eq!(container.caption.as_deref(), Some("A reel, uploaded"));
    assert_eq!(container.upload_type.as_deref(), Some("resumable"));
    assert_eq!(
        container.upload_checksum.as_deref(),
        Some(checksum_of(&clip.url).await.as_str()),
        "the bytes arrived whole and in order"
    );
    let offsets: Vec<Option<u64>> = state.ig_uploads.iter().map(|u| u.offset).collect();
    assert_eq!(offsets, [Some(0), Some(1000), Some(2000)]);
    assert!(state
        .ig_uploads
        .iter()
        .all(|u| u.accepted && u.file_size == Some(2500)));
    assert_eq!(*progress.chunks.lock().unwrap(), [1000, 2000, 2500]);
    assert_eq!(progress.sessions.lock().unwrap().len(), 1);
    assert!(
        !progress.sessions.lock().unwrap()[0].contains(token.expose()),
        "the session handle holds no token"
    );

    draft.media_ids.push(reference);
    let created = env
        .adapter
        .create_post(&token, &draft, &Gate::default())
        .await
        .unwrap();
    let state = env.sandbox.meta_state();
    assert_eq!(
        state.containers.len(),
        1,
        "the uploaded container is published"
    );
    assert_eq!(state.instagram_media.len(), 1);
    let media = &state.instagram_media[0];
    assert_eq!(media.id, created.post_id);
    assert_eq!(
        (media.media_type.as_str(), media.media_product_type.as_str()),
        ("VIDEO", "REELS")
    );
    assert_eq!(env.publish_calls(), 1);
    env.sandbox.stop().await;
}

#[tokio::test]
async fn an_interrupted_upload_resumes_from_the_confirmed_offset() {
    let env = Env::start(|_| {}, None)
        .await
        .reconfigured(|config| config.upload_chunk_bytes = 1000);
    let account = env.account("ig_resume").await;
    let token = token(&account);
    let (clip, mut draft) = env.video_draft(&account, "story.mp4", 3500, "stories", "");

    // The second chunk fails (503): the attempt ends, retryable, after one confirmed chunk.
    let first = Recorder {
        fail_after_first_chunk: Some(&env.sandbox),
        ..Recorder::default()
    };
    let failure = env.upload(&token, &draft, None, &first).await.unwrap_err();
    assert_eq!(failure.class, ErrorClass::Retryable, "{failure:?}");
    assert_eq!(*first.chunks.lock().unwrap(), [1000]);
    let session = first.sessions.lock().unwrap()[0].clone();

    // The next attempt sends from 1000 into the same container.
    let resume = UploadResume {
        session: Secret::new(session.clone()),
        bytes_confirmed: 1000,
    };
    let second = Recorder::default();
    let reference = env
        .upload(&token, &draft, Some(&resume), &second)
        .await
        .unwrap();
    let state = env.sandbox.meta_state();
    assert_eq!(state.containers.len(), 1, "no new container");
    assert_eq!(reference, format!("container:{}", state.containers[0].id));
    assert!(second.sessions.lock().unwrap().is_empty());
    assert_eq!(*second.chunks.lock().unwrap(), [2000, 3000, 3500]);
    let sent: Vec<(Option<u64>, Option<u16>)> = state
        .ig_uploads
        .iter()
        .map(|u| (u.offset, u.status))
        .collect();
    assert_eq!(
        sent,
        [
            (Some(0), Some(200)),
            (Some(1000), Some(503)),
            (Some(1000), Some(200)),
            (Some(2000), Some(200)),
            (Some(3000), Some(200)),
        ]
    );
    assert_eq!(
        state.containers[0].upload_checksum.as_deref(),
        Some(checksum_of(&clip.url).await.as_str())
    );
    draft.media_ids.push(reference);
    env.adapter
        .create_post(&token, &draft, &Gate::default())
        .await
        .unwrap();
    assert_eq!(
        env.sandbox.meta_state().instagram_media[0].media_product_type,
        "STORY"
    );

    // A session Meta will not continue (its container is gone): a new upload, recorded anew.
    let gone = UploadResume {
        session: Secret::new(session.replace(&state.containers[0].id, "17900000000009999")),
        bytes_confirmed: 2000,
    };
    let third = Recorder::default();
    let reference = env
        .upload(&token, &draft, Some(&gone), &third)
        .await
        .unwrap();
    let state = env.sandbox.meta_state();
    assert_eq!(state.containers.len(), 2);
    assert_eq!(reference, format!("container:{}", state.containers[1].id));
    assert_eq!(third.sessions.lock().unwrap().len(), 1);
    assert_eq!(*third.chunks.lock().unwrap(), [1000, 2000, 3000, 3500]);
    env.sandbox.stop().await;
}

#[tokio::test]
async fn with_url_uploads_meta_fetches_the_video() {
    let env = Env::start(|_| {}, None)
        .await
        .reconfigured(|config| config.video_upload = VideoUpload::Url);
    let account = env.account("ig_url").await;
    let token = token(&account);
    let draft = env.draft(&account, "fetched", &["u.mp4"], None).await;
    assert_eq!(
        draft.media_ids,
        [format!("video:{}", env.media_url("u.mp4", 2000))]
    );
    env.adapter
        .create_post(&token, &draft, &Gate::default())
        .await
        .unwrap();
    let state = env.sandbox.meta_state();
    assert!(state.ig_uploads.is_empty());
    assert_eq!(
        state.containers[0].video_url.as_deref(),
        Some(env.media_url("u.mp4", 2000).as_str())
    );
    env.sandbox.stop().await;
}

/// Two workers (two gates over their own pools on one database) publish eight posts at once to
/// an account with room for three: three are published, the rest wait for the slot that frees
/// first, and Instagram never has to refuse one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_never_take_the_last_slot_twice() {
    let env = Env::start(|sandbox| sandbox.meta.ig_quota_total = 3, None).await;
    let account = env.account("ig_strict").await;
    let token = token(&account);
    let dir = std::env::temp_dir().join(format!("herald-ig-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("q.db").display());
    let gates = [
        SharedRateLimits::new(
            Db::connect(&url, 4).await.unwrap(),
            Platform::Instagram,
            &account.profile.account_id,
        ),
        SharedRateLimits::new(
            Db::connect(&url, 4).await.unwrap(),
            Platform::Instagram,
            &account.profile.account_id,
        ),
    ];
    let mut drafts = Vec::new();
    for n in 0..8 {
        drafts.push(
            env.draft(&account, &format!("strict {n}"), &["q.jpg"], None)
                .await,
        );
    }
    let (adapter, token_ref) = (&env.adapter, &token);
    // Publishes take a while: every reading happens while others are on their way.
    env.sandbox.inject_meta_fault(
        MetaEndpoint::IgPublish,
        Fault::SlowProcessing { secs: 0.3 },
        8,
    );
    // Every reservation (and so every slot's start) is at or after this moment.
    let started = Utc::now();
    let results = futures::future::join_all(drafts.iter().enumerate().map(|(n, draft)| {
        let gate = &gates[n % 2];
        async move { adapter.create_post(token_ref, draft, gate).await }
    }))
    .await;
    let published = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(published, 3, "{results:?}");
    let state = env.sandbox.meta_state();
    assert_eq!(state.instagram_media.len(), 3);
    assert_eq!(
        state.ig_quota_refusals, 0,
        "Instagram never refused a publish"
    );
    assert_eq!(env.publish_calls(), 3);
    for result in &results {
        if let Err(PostError::Failed(f)) = result {
            assert_eq!(
                (f.class, f.code.as_str()),
                (ErrorClass::RateLimited, "publishing_quota"),
                "{f:?}"
            );
            // The first slot frees 24 hours after its publish; Herald's estimate comes from its
            // own reservation or the platform's timestamp (whole seconds), whichever it saw
            // first, so it is never before the test began plus the window.
            let until = f.not_before.unwrap();
            assert!(
                until >= started + TimeDelta::hours(24) - TimeDelta::seconds(1),
                "{until} (started {started})"
            );
        }
    }
    env.sandbox.stop().await;
}

/// An uploaded video whose container expired before it was published (24 hours on Instagram,
/// e.g. while the quota was used up) is uploaded again into a new container, then published.
#[tokio::test]
async fn an_uploaded_video_whose_container_expired_is_uploaded_again() {
    let env = Env::start(
        |sandbox| sandbox.meta.ig_container_lifetime = Duration::from_millis(1500),
        None,
    )
    .await;
    let account = env.account("ig_expired").await;
    let token = token(&account);
    let draft = env
        .draft(&account, "late reel", &["late.mp4"], Some("reels"))
        .await;
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let created = env
        .adapter
        .create_post(&token, &draft, &Gate::default())
        .await
        .unwrap();
    let state = env.sandbox.meta_state();
    assert_eq!(state.containers.len(), 2, "{:?}", state.containers);
    assert_eq!(state.containers[0].status_code, "EXPIRED");
    let media = &state.instagram_media[0];
    assert_eq!(media.id, created.post_id);
    assert_eq!(media.container_id, state.containers[1].id);
    assert_eq!(media.caption, "late reel");
    env.sandbox.stop().await;
}
