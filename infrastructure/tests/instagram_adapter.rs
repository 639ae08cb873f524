//! The Instagram adapter against the sandbox's Meta twin over real HTTP: one Facebook login
//! connects the linked business account (and explains when there is none); images, reels,
//! stories and carousels; the live publishing quota; reconciliation; and the failure classes.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use herald_domain::{ErrorClass, MediaItem, MediaKind, PlatformFailure, PublishOptions};
use herald_infrastructure::platforms::instagram::{InstagramAdapter, InstagramConfig};
use herald_infrastructure::platforms::{
    ConnectedAccount, MediaUpload, PlatformAdapter, PostDraft, PostError, RateLimitGate,
    TokenGrant, UploadProgress,
};
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

    /// A draft whose media went through `upload_media`.
    async fn draft(
        &self,
        token: &Secret,
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
        let mut draft = PostDraft {
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
    let renewed = env
        .adapter
        .refresh(grant.refresh_token.as_ref().unwrap())
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

    let image = env.draft(&token, "One #photo", &["a.jpg"], None).await;
    assert_eq!(
        image.media_ids[0],
        format!("image:{}", env.media_url("a.jpg", 2000))
    );
    let created = env
        .adapter
        .create_post(&token, &image, &gate)
        .await
        .unwrap();
    let state = env.sandbox.meta_state();
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
        env.draft(&token, "A feed video", &["v.mp4"], None).await,
        env.draft(&token, "A reel", &["r.mp4"], Some("reels")).await,
        env.draft(&token, "ignored caption", &["s.jpg"], Some("stories"))
            .await,
        env.draft(&token, "", &["s.mp4"], Some("stories")).await,
        env.draft(&token, "An album", &["c1.jpg", "c2.mp4", "c3.jpg"], None)
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
    assert!(album.media_urls[1].contains("c2.mp4"));
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
            .draft(&token, &format!("post {n}"), &["q.jpg"], None)
            .await;
        env.adapter
            .create_post(&token, &draft, &Gate::default())
            .await
            .unwrap();
    }
    let gate = Gate::default();
    let draft = env.draft(&token, "one too many", &["q.jpg"], None).await;
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
    let draft = env.draft(&token, "first", &["q.jpg"], None).await;
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
    let draft = env.draft(&token, "lost answer", &["l.jpg"], None).await;
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
        .find_post(
            &token,
            &account.profile.account_id,
            since,
            &draft,
            &Gate::default(),
        )
        .await
        .unwrap()
        .expect("found");
    assert_eq!(
        found.post_id,
        env.sandbox.meta_state().instagram_media[0].id
    );
    assert!(found.url.starts_with("https://www.instagram.com/p/"));
    let other = env.draft(&token, "never posted", &["l.jpg"], None).await;
    assert!(env
        .adapter
        .find_post(
            &token,
            &account.profile.account_id,
            since,
            &other,
            &Gate::default()
        )
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
        .draft(&token, "bad reel", &["bad.mp4"], Some("reels"))
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

    // Processing slower than the wait: retry later (a new container then).
    let account = env.account("ig_erin").await;
    let token = self::token(&account);
    let slow = env.draft(&token, "slow", &["slow.mp4"], None).await;
    env.fault(
        MetaEndpoint::IgCreateContainer,
        Fault::SlowProcessing { secs: 60.0 },
    );
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
