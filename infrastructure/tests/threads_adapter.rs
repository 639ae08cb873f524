//! The Threads adapter against the sandbox's Threads twin over real HTTP: connect, refresh,
//! text, image, carousel and video posts, replies (the later parts of a thread) and their
//! quota and permissions, reconciliation, and the failure classes the publisher relies on.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use herald_domain::connection::AccountProfile;
use herald_domain::{ErrorClass, MediaItem, MediaKind, Platform};
use herald_infrastructure::db::Db;
use herald_infrastructure::platforms::threads::{ThreadsAdapter, ThreadsConfig, DEFAULT_SCOPES};
use herald_infrastructure::platforms::{
    MediaUpload, PlatformAdapter, PostDraft, PostError, RateLimitGate, TokenGrant, UploadProgress,
};
use herald_infrastructure::rate_limit::SharedRateLimits;
use herald_infrastructure::secret::Secret;
use herald_sandbox::{Fault, Sandbox, SandboxConfig, ThreadsEndpoint};
use url::Url;

const REDIRECT: &str = "http://127.0.0.1:9/callback";

struct Env {
    sandbox: Sandbox,
    adapter: ThreadsAdapter,
}

impl Env {
    async fn start() -> Self {
        Self::start_with(|_| {}, |_| {}).await
    }

    async fn start_with(
        sandbox_setup: impl FnOnce(&mut SandboxConfig),
        adapter_setup: impl FnOnce(&mut ThreadsConfig),
    ) -> Self {
        let mut sandbox_config = SandboxConfig::default();
        sandbox_config.threads.video_processing_delay = Duration::from_millis(400);
        sandbox_setup(&mut sandbox_config);
        let sandbox = Sandbox::start("127.0.0.1:0", sandbox_config)
            .await
            .expect("sandbox starts");
        let mut config = ThreadsConfig::for_base(
            Url::parse(&sandbox.threads_base_url()).unwrap(),
            sandbox_defaults().0,
            Secret::new(sandbox_defaults().1),
        );
        config.request_timeout = Duration::from_secs(1);
        config.status_poll_interval = Duration::from_millis(50);
        adapter_setup(&mut config);
        Self {
            adapter: ThreadsAdapter::new(config).expect("adapter builds"),
            sandbox,
        }
    }

    /// The whole connect flow: authorize URL → consent (302) → code exchange.
    async fn connect(&self) -> TokenGrant {
        self.connect_as(None, None).await
    }

    /// [`Self::connect`] as Threads user `sandbox_user` (default: the twin's), granting
    /// `scopes` instead of the ones the adapter asks for.
    async fn connect_as(&self, sandbox_user: Option<&str>, scopes: Option<&str>) -> TokenGrant {
        let start = self.adapter.authorization_url(REDIRECT);
        let mut url = start.url.clone();
        let asked: Vec<(String, String)> = url
            .query_pairs()
            .into_owned()
            .map(|(k, v)| match (k.as_str(), scopes) {
                ("scope", Some(granted)) => (k, granted.to_owned()),
                _ => (k, v),
            })
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(asked)
            .extend_pairs(sandbox_user.map(|u| ("sandbox_user", u)));
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let consent = browser.get(url).send().await.unwrap();
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

    async fn media(&self, grant: &TokenGrant, url: &str, kind: MediaKind) -> String {
        let progress = Progress::default();
        let reference = self
            .adapter
            .upload_media(
                &grant.access_token,
                &MediaUpload::single(
                    &MediaItem {
                        url: url.to_owned(),
                        kind,
                        mime_type: "image/png".into(),
                        probe: None,
                    },
                    &PostDraft::default(),
                ),
                &Gate::default(),
                &progress,
            )
            .await
            .expect("media reference");
        assert_eq!(*progress.started.lock().unwrap(), [0]);
        reference
    }

    async fn post(&self, grant: &TokenGrant, draft: &PostDraft) -> Result<String, PostError> {
        self.adapter
            .create_post(&grant.access_token, draft, &Gate::default())
            .await
            .map(|p| p.post_id)
    }

    fn fault(&self, endpoint: ThreadsEndpoint, fault: Fault) {
        self.sandbox.inject_threads_fault(endpoint, fault, 1);
    }
}

fn sandbox_defaults() -> (String, String) {
    let d = SandboxConfig::default().threads;
    (d.client_id, d.client_secret)
}

fn text(t: &str) -> PostDraft {
    PostDraft {
        text: t.to_owned(),
        ..PostDraft::default()
    }
}

fn failed_class(result: Result<String, PostError>) -> ErrorClass {
    match result {
        Err(PostError::Failed(f)) => f.class,
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
}

#[async_trait::async_trait]
impl UploadProgress for Progress {
    async fn started(&self, total_bytes: u64) {
        self.started.lock().unwrap().push(total_bytes);
    }

    async fn session_opened(&self, _session: &herald_infrastructure::secret::Secret) {}

    async fn chunk_sent(&self, _bytes_sent: u64, _total_bytes: u64) {}
}

#[tokio::test]
async fn connects_with_a_long_lived_token_reads_the_account_and_refreshes() {
    let env = Env::start().await;
    let start = env.adapter.authorization_url(REDIRECT);
    let scope = start
        .url
        .query_pairs()
        .find(|(k, _)| k == "scope")
        .unwrap()
        .1;
    assert_eq!(
        scope,
        "threads_basic,threads_content_publish,threads_manage_replies,threads_read_replies"
    );
    assert_eq!(scope, DEFAULT_SCOPES.join(","));
    let grant = env.connect().await;
    let issued = env.sandbox.threads_state().tokens_issued;
    assert_eq!(issued.len(), 2, "short-lived, then long-lived");
    assert!(issued[1].long_lived);
    assert_eq!(grant.access_token.expose(), issued[1].access_token);
    assert_eq!(grant.refresh_token.as_ref(), Some(&grant.access_token));
    let expires = grant.expires_at.expect("expiry");
    assert!(expires > Utc::now() + TimeDelta::days(59));

    let account = env.adapter.account(&grant.access_token).await.unwrap();
    assert_eq!(account.username, "herald_sandbox");
    assert_eq!(account.display_name, "Herald Sandbox");

    let fresh = env
        .adapter
        .refresh(
            &AccountProfile::default(),
            grant.refresh_token.as_ref().unwrap(),
        )
        .await
        .unwrap();
    assert_ne!(fresh.access_token, grant.access_token);
    assert_eq!(fresh.refresh_token.as_ref(), Some(&fresh.access_token));

    let refused = env
        .adapter
        .refresh(&AccountProfile::default(), &Secret::new("not-a-token"))
        .await
        .unwrap_err();
    assert_eq!(refused.class, ErrorClass::ReauthorizationRequired);
    assert!(refused.message.contains("reconnect"), "{}", refused.message);
    assert!(!refused.message.contains("not-a-token"));
    env.sandbox.stop().await;
}

#[tokio::test]
async fn publishes_text_image_carousel_and_video_posts() {
    let env = Env::start().await;
    let grant = env.connect().await;
    let gate = Gate::default();
    let created = env
        .adapter
        .create_post(&grant.access_token, &text("hello threads"), &gate)
        .await
        .unwrap();
    let posts = env.sandbox.threads_state().posts;
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].id, created.post_id);
    assert_eq!(posts[0].text, "hello threads");
    assert_eq!(created.url, posts[0].permalink);
    let acquired = gate.acquired.lock().unwrap().clone();
    assert!(acquired.contains(&"threads_create".to_owned()));
    assert!(acquired.contains(&"threads_publish".to_owned()));
    // Meta's usage headers are percentages, not calls: a budget with room is not reported.
    assert!(!gate
        .observed
        .lock()
        .unwrap()
        .iter()
        .any(|(e, left, _)| e == "threads_publish" && left.is_some_and(|l| l > 0)));

    let image = env
        .media(&grant, "https://cdn.example/a.png", MediaKind::Image)
        .await;
    assert_eq!(image, "image:https://cdn.example/a.png");
    let mut draft = text("a picture");
    draft.media_ids = vec![image.clone()];
    env.post(&grant, &draft).await.unwrap();

    let video = env
        .media(&grant, "https://cdn.example/b.mp4", MediaKind::Video)
        .await;
    draft = text("an album");
    draft.media_ids = vec![image, video.clone()];
    env.post(&grant, &draft).await.unwrap();

    draft = text("");
    draft.media_ids = vec![video];
    env.post(&grant, &draft).await.unwrap();

    let posts = env.sandbox.threads_state().posts;
    let kinds: Vec<&str> = posts.iter().map(|p| p.media_type.as_str()).collect();
    assert_eq!(kinds, ["TEXT_POST", "IMAGE", "CAROUSEL_ALBUM", "VIDEO"]);
    assert_eq!(
        posts[2].media_urls,
        ["https://cdn.example/a.png", "https://cdn.example/b.mp4"]
    );
    env.sandbox.stop().await;
}

#[tokio::test]
async fn failures_are_classified_for_the_publisher() {
    let env = Env::start().await;
    let grant = env.connect().await;

    // Before threads_publish nothing is visible: a timeout is retryable.
    env.fault(
        ThreadsEndpoint::CreateContainer,
        Fault::Timeout { secs: 3.0 },
    );
    assert_eq!(
        failed_class(env.post(&grant, &text("slow container")).await),
        ErrorClass::Retryable
    );

    // A timeout on threads_publish after the post exists: outcome unknown, then found.
    let since = Utc::now();
    env.fault(
        ThreadsEndpoint::Publish,
        Fault::TimeoutAfterSuccess { secs: 3.0 },
    );
    let draft = text("did it post?");
    assert!(matches!(
        env.post(&grant, &draft).await,
        Err(PostError::OutcomeUnknown(_))
    ));
    let account = env.adapter.account(&grant.access_token).await.unwrap();
    let found = env
        .adapter
        .find_post(
            &grant.access_token,
            since,
            &PostDraft {
                account: account.clone(),
                ..draft.clone()
            },
            &Gate::default(),
        )
        .await
        .unwrap()
        .expect("the post is found");
    let posts = env.sandbox.threads_state().posts;
    assert_eq!(posts.len(), 1);
    assert_eq!(found.post_id, posts[0].id);
    assert!(env
        .adapter
        .find_post(
            &grant.access_token,
            since,
            &PostDraft {
                account: account.clone(),
                ..text("never posted")
            },
            &Gate::default()
        )
        .await
        .unwrap()
        .is_none());

    env.fault(ThreadsEndpoint::Publish, Fault::ServerError { status: 503 });
    assert_eq!(
        failed_class(env.post(&grant, &text("5xx")).await),
        ErrorClass::Retryable
    );
    env.fault(
        ThreadsEndpoint::Publish,
        Fault::RateLimited {
            retry_after_secs: 120,
        },
    );
    match env.post(&grant, &text("limited")).await {
        Err(PostError::Failed(f)) => {
            assert_eq!(f.class, ErrorClass::RateLimited);
            assert!(f
                .not_before
                .is_some_and(|t| t > Utc::now() + TimeDelta::seconds(60)));
        }
        other => panic!("expected rate limited, got {other:?}"),
    }
    env.fault(ThreadsEndpoint::CreateContainer, Fault::ExpireToken);
    assert_eq!(
        failed_class(env.post(&grant, &text("expired")).await),
        ErrorClass::Auth
    );

    let fresh = env.connect().await;
    env.fault(ThreadsEndpoint::CreateContainer, Fault::RejectMedia);
    let mut draft = text("bad image");
    draft.media_ids = vec!["image:https://cdn.example/bad.png".into()];
    match env.post(&fresh, &draft).await {
        Err(PostError::Failed(f)) => {
            assert_eq!(f.class, ErrorClass::Permanent);
            assert!(
                f.message.contains("could not be processed"),
                "{}",
                f.message
            );
        }
        other => panic!("expected a permanent failure, got {other:?}"),
    }
    let too_long = "a".repeat(501);
    assert_eq!(
        failed_class(env.post(&fresh, &text(&too_long)).await),
        ErrorClass::Permanent
    );

    let closed = Gate {
        refuse_until: Some(Utc::now() + TimeDelta::minutes(5)),
        ..Gate::default()
    };
    match env
        .adapter
        .create_post(&fresh.access_token, &text("gated"), &closed)
        .await
    {
        Err(PostError::Failed(f)) => assert_eq!(f.class, ErrorClass::RateLimited),
        other => panic!("expected the gate to refuse, got {other:?}"),
    }
    // Only the post that timed out after success exists.
    assert_eq!(env.sandbox.threads_state().posts.len(), 1);
    env.sandbox.stop().await;
}

/// Publishes `draft` into a used-up quota (`key` at the gate, whose refusal `says` so): Herald
/// refuses it before Threads has to, until the post `oldest` leaves the 24-hour window, and
/// closes the quota for every worker until then.
async fn assert_quota_used_up(
    env: &Env,
    grant: &TokenGrant,
    draft: &PostDraft,
    (key, says): (&str, &str),
    oldest: &str,
) {
    let gate = Gate::default();
    let f = match env
        .adapter
        .create_post(&grant.access_token, draft, &gate)
        .await
    {
        Err(PostError::Failed(f)) => f,
        other => panic!("expected the quota to be used up, got {other:?}"),
    };
    assert_eq!(
        (f.class, f.code.as_str()),
        (ErrorClass::RateLimited, "publishing_quota")
    );
    assert!(f.message.contains(says), "{}", f.message);
    let posted = env
        .sandbox
        .threads_state()
        .posts
        .into_iter()
        .find(|p| p.id == oldest)
        .map(|p| DateTime::parse_from_rfc3339(&p.timestamp).unwrap())
        .expect("the oldest post")
        .with_timezone(&Utc);
    let until = f.not_before.expect("when a slot frees");
    let frees = (until - (posted + TimeDelta::hours(24))).num_seconds();
    assert!(frees.abs() <= 2, "{until} vs {posted}");
    assert!(gate
        .observed
        .lock()
        .unwrap()
        .iter()
        .any(|(k, left, at)| k == key && *left == Some(0) && *at == Some(until)));
}

fn publish_calls(env: &Env) -> usize {
    env.sandbox
        .threads_state()
        .requests
        .iter()
        .filter(|r| r.path.ends_with("/threads_publish"))
        .count()
}

#[tokio::test]
async fn the_publishing_quota_is_read_live_and_respected() {
    let env = Env::start_with(|sandbox| sandbox.threads.quota_total = 2, |_| {}).await;
    let grant = env.connect().await;
    let first = env.post(&grant, &text("first")).await.unwrap();
    env.post(&grant, &text("second")).await.unwrap();
    assert_quota_used_up(
        &env,
        &grant,
        &text("one too many"),
        (
            "threads_publishing_quota",
            "Threads profile used its 2 API-published posts",
        ),
        &first,
    )
    .await;
    assert_eq!(publish_calls(&env), 2, "nothing published past the quota");
    assert!(env
        .sandbox
        .threads_state()
        .requests
        .iter()
        .any(|r| r.path.ends_with("/me/threads_publishing_limit")));

    // Replies have a quota of their own: the rest of a thread still goes out.
    let reply = PostDraft {
        reply_to: Some(first),
        ..text("a reply")
    };
    env.post(&grant, &reply).await.unwrap();
    assert_eq!(env.sandbox.threads_state().quota_refusals, 0);

    // A configured cap below Threads' figure wins.
    let env = Env::start_with(|_| {}, |config| config.publish_quota_cap = Some(1)).await;
    let grant = env.connect().await;
    env.post(&grant, &text("capped")).await.unwrap();
    assert_eq!(
        failed_class(env.post(&grant, &text("past the cap")).await),
        ErrorClass::RateLimited
    );
    assert_eq!(publish_calls(&env), 1);
    env.sandbox.stop().await;
}

/// Two workers (two gates over their own pools on one database) publish eight posts at once to
/// a profile with room for three: three are published, the rest wait, and Threads never has to
/// refuse one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_never_take_the_last_slot_twice() {
    let env = Env::start_with(|sandbox| sandbox.threads.quota_total = 3, |_| {}).await;
    let grant = env.connect().await;
    let account = env.adapter.account(&grant.access_token).await.unwrap();
    let dir = std::env::temp_dir().join(format!("herald-th-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("q.db").display());
    let mut gates = Vec::new();
    for _ in 0..2 {
        gates.push(SharedRateLimits::new(
            Db::connect(&url, 4).await.unwrap(),
            Platform::Threads,
            &account.account_id,
        ));
    }
    let drafts: Vec<PostDraft> = (0..8).map(|n| text(&format!("strict {n}"))).collect();
    let (adapter, token) = (&env.adapter, &grant.access_token);
    // Publishes take a while: every reading happens while others are on their way.
    env.sandbox.inject_threads_fault(
        ThreadsEndpoint::Publish,
        Fault::SlowProcessing { secs: 0.3 },
        8,
    );
    let results = futures::future::join_all(drafts.iter().enumerate().map(|(n, draft)| {
        let gate = &gates[n % 2];
        async move { adapter.create_post(token, draft, gate).await }
    }))
    .await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        3,
        "{results:?}"
    );
    for result in results.iter().filter_map(|r| r.as_ref().err()) {
        match result {
            PostError::Failed(f) => assert_eq!(f.code, "publishing_quota", "{f:?}"),
            other => panic!("{other:?}"),
        }
    }
    let state = env.sandbox.threads_state();
    assert_eq!(state.posts.len(), 3);
    assert_eq!(state.quota_refusals, 0, "Threads never refused a publish");
    assert_eq!(publish_calls(&env), 3);
    env.sandbox.stop().await;
}

/// A reply draft answering `parent`, as the publisher makes a thread's later parts.
fn reply(parent: &str, t: &str, account: &AccountProfile) -> PostDraft {
    PostDraft {
        account: account.clone(),
        reply_to: Some(parent.to_owned()),
        ..text(t)
    }
}

fn reply_to_id_of(env: &Env, post_id: &str) -> Option<String> {
    env.sandbox
        .threads_state()
        .posts
        .into_iter()
        .find(|p| p.id == post_id)
        .and_then(|p| p.reply_to_id)
}

#[tokio::test]
async fn a_reply_is_published_with_reply_to_id_and_found_among_its_parents_replies() {
    let env = Env::start().await;
    let grant = env.connect().await;
    let account = env.adapter.account(&grant.access_token).await.unwrap();
    let root = env.post(&grant, &text("part one")).await.unwrap();
    let second = env
        .post(&grant, &reply(&root, "part two", &account))
        .await
        .unwrap();
    assert_eq!(reply_to_id_of(&env, &second), Some(root.clone()));

    // The same words as a post of its own, then as a reply whose answer never arrives, then
    // as someone else's reply to the same post: only Herald's own reply is the outcome.
    let since = Utc::now();
    let top_level = env.post(&grant, &text("same words")).await.unwrap();
    env.fault(
        ThreadsEndpoint::Publish,
        Fault::TimeoutAfterSuccess { secs: 3.0 },
    );
    let lost = reply(&root, "same words", &account);
    assert!(matches!(
        env.post(&grant, &lost).await,
        Err(PostError::OutcomeUnknown(_))
    ));
    let mentions = format!("{},threads_manage_mentions", DEFAULT_SCOPES.join(","));
    let other = env.connect_as(Some("someone_else"), Some(&mentions)).await;
    let others = env
        .post(&other, &reply(&root, "same words", &account))
        .await
        .unwrap();
    let find = |draft: PostDraft| {
        let (env, token) = (&env, &grant.access_token);
        async move {
            env.adapter
                .find_post(token, since, &draft, &Gate::default())
                .await
                .unwrap()
                .map(|found| found.post_id)
        }
    };
    let found = find(lost.clone()).await.expect("the reply is found");
    assert_ne!(found, top_level);
    assert_ne!(found, others);
    assert_eq!(reply_to_id_of(&env, &found), Some(root.clone()));
    let replies_listed = env
        .sandbox
        .threads_state()
        .requests
        .iter()
        .any(|r| r.path.ends_with(&format!("/{root}/replies")));
    assert!(replies_listed, "looked among the parent's replies");
    // A post is still matched among the account's posts, never a reply.
    let post = PostDraft {
        account: account.clone(),
        ..text("same words")
    };
    assert_eq!(find(post).await, Some(top_level));
    assert_eq!(find(reply(&root, "never sent", &account)).await, None);
    assert_eq!(find(reply(&second, "same words", &account)).await, None);
    env.sandbox.stop().await;
}

#[tokio::test]
async fn the_reply_quota_is_read_live_and_closes_at_its_limit_while_posts_still_go() {
    let env = Env::start_with(|sandbox| sandbox.threads.reply_quota_total = 2, |_| {}).await;
    let grant = env.connect().await;
    let account = env.adapter.account(&grant.access_token).await.unwrap();
    let root = env.post(&grant, &text("root")).await.unwrap();
    let first = env
        .post(&grant, &reply(&root, "reply 1", &account))
        .await
        .unwrap();
    env.post(&grant, &reply(&first, "reply 2", &account))
        .await
        .unwrap();
    assert_quota_used_up(
        &env,
        &grant,
        &reply(&root, "reply 3", &account),
        (
            "threads_reply_quota",
            "Threads profile used its 2 API-published replies",
        ),
        &first,
    )
    .await;
    assert_eq!(publish_calls(&env), 3, "no reply published past the quota");
    // The posts' quota is untouched: a post still goes.
    env.post(&grant, &text("a post")).await.unwrap();
    let state = env.sandbox.threads_state();
    assert_eq!((state.reply_quota_refusals, state.quota_refusals), (0, 0));

    // A configured cap below Threads' figure wins.
    let env = Env::start_with(|_| {}, |config| config.reply_quota_cap = Some(1)).await;
    let grant = env.connect().await;
    let root = env.post(&grant, &text("capped root")).await.unwrap();
    env.post(&grant, &reply(&root, "the one reply", &account))
        .await
        .unwrap();
    assert_eq!(
        failed_class(
            env.post(&grant, &reply(&root, "past the cap", &account))
                .await
        ),
        ErrorClass::RateLimited
    );
    env.sandbox.stop().await;
}

#[tokio::test]
async fn a_connection_without_the_reply_permissions_is_asked_to_reconnect() {
    let env = Env::start().await;
    let grant = env
        .connect_as(None, Some("threads_basic,threads_content_publish"))
        .await;
    let account = env.adapter.account(&grant.access_token).await.unwrap();
    let root = env.post(&grant, &text("posts still go")).await.unwrap();
    let refused = match env.post(&grant, &reply(&root, "part two", &account)).await {
        Err(PostError::Failed(f)) => f,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(refused.class, ErrorClass::ReauthorizationRequired);
    assert!(
        refused.message.contains("threads_manage_replies") && refused.message.contains("reconnect"),
        "{}",
        refused.message
    );
    assert_eq!(env.sandbox.threads_state().posts.len(), 1);

    let unread = env
        .adapter
        .find_post(
            &grant.access_token,
            Utc::now(),
            &reply(&root, "part two", &account),
            &Gate::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(unread.class, ErrorClass::ReauthorizationRequired);
    assert!(
        unread.message.contains("threads_read_replies"),
        "{}",
        unread.message
    );
    env.sandbox.stop().await;
}
