//! The X adapter against the sandbox's X twin over real HTTP: connect, refresh, revoke, media,
//! posts, and every failure class the publisher relies on.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use actix_web::{dev::ServerHandle, web, App, HttpResponse, HttpServer};
use chrono::{DateTime, TimeDelta, Utc};
use herald_domain::connection::AccountProfile;
use herald_domain::{ErrorClass, MediaItem, MediaKind, PlatformFailure, Poll};
use herald_infrastructure::media_source::MediaUrlPolicy;
use herald_infrastructure::platforms::x::{XAdapter, XConfig};
use herald_infrastructure::platforms::{
    MediaUpload, PlatformAdapter, PostDraft, PostError, RateLimitGate, TokenGrant, UploadProgress,
};
use herald_infrastructure::secret::Secret;
use herald_sandbox::{Fault, Sandbox, SandboxConfig, XEndpoint};
use url::Url;

const REDIRECT: &str = "http://127.0.0.1:9/callback";
const CLIENT_ID: &str = "herald-sandbox-x";
const CLIENT_SECRET: &str = "herald-sandbox-x-secret";
/// Small chunks so a test video needs several APPEND segments.
const CHUNK: usize = 64 * 1024;

/// A sandbox, a media server and an adapter pointed at them.
struct Env {
    sandbox: Sandbox,
    media: MediaServer,
    adapter: XAdapter,
}

impl Env {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn start_with(tweak: impl FnOnce(&mut XConfig)) -> Self {
        let sandbox = Sandbox::start("127.0.0.1:0", SandboxConfig::default())
            .await
            .expect("sandbox starts");
        let mut config = XConfig::for_base(
            Url::parse(&sandbox.x_base_url()).unwrap(),
            CLIENT_ID,
            Some(Secret::new(CLIENT_SECRET)),
        );
        config.media_chunk_bytes = CHUNK;
        config.request_timeout = Duration::from_secs(5);
        // The test media server is on loopback.
        config.media_policy = MediaUrlPolicy::new(true, "");
        tweak(&mut config);
        Self {
            media: MediaServer::start().await,
            adapter: XAdapter::new(config).expect("adapter builds"),
            sandbox,
        }
    }

    /// The whole connect flow: authorize URL → consent (302) → code exchange.
    async fn connect(&self) -> TokenGrant {
        let start = self.adapter.authorization_url(REDIRECT);
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let consent = browser.get(start.url.clone()).send().await.unwrap();
        assert_eq!(consent.status(), 302, "authorize must redirect");
        let location = consent.headers()["location"].to_str().unwrap();
        let callback: HashMap<String, String> = Url::parse(location)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        assert!(location.starts_with(REDIRECT));
        assert_eq!(callback["state"], start.state);
        self.adapter
            .exchange_code(&callback["code"], &start.pkce_verifier, REDIRECT)
            .await
            .expect("code exchange succeeds")
    }

    fn media_item(&self, path: &str, kind: MediaKind, mime: &str) -> MediaItem {
        MediaItem {
            url: format!("{}{path}", self.media.base),
            kind,
            mime_type: mime.to_owned(),
            probe: None,
        }
    }

    async fn upload(
        &self,
        grant: &TokenGrant,
        item: &MediaItem,
    ) -> Result<String, PlatformFailure> {
        self.adapter
            .upload_media(
                &grant.access_token,
                &MediaUpload::single(item, &PostDraft::default()),
                &Gate::default(),
                &Progress::default(),
            )
            .await
    }

    async fn post(&self, grant: &TokenGrant, draft: &PostDraft) -> Result<String, PostError> {
        self.adapter
            .create_post(&grant.access_token, draft, &Gate::default())
            .await
            .map(|p| p.post_id)
    }

    fn fault(&self, endpoint: XEndpoint, fault: Fault) {
        self.sandbox.inject_x_fault(endpoint, fault, 1);
    }
}

fn text(t: &str) -> PostDraft {
    PostDraft {
        text: t.to_owned(),
        ..PostDraft::default()
    }
}

/// Fails the test unless `failure` has `class`; also checks that no token leaked into it.
fn expect_class(failure: &PlatformFailure, class: ErrorClass, grant: &TokenGrant) {
    assert_eq!(failure.class, class, "{failure}");
    let shown = format!("{failure} {failure:?}");
    assert!(!shown.contains(grant.access_token.expose()));
    if let Some(refresh) = &grant.refresh_token {
        assert!(!shown.contains(refresh.expose()));
    }
}

fn expect_failed(result: Result<String, PostError>) -> PlatformFailure {
    match result {
        Err(PostError::Failed(failure)) => failure,
        other => panic!("expected a failed post, got {other:?}"),
    }
}

/// One `observe` call: endpoint, remaining, reset.
type Observation = (String, Option<u64>, Option<DateTime<Utc>>);

/// Records what the adapter told the rate-limit gate; refuses everything when `refuse_until`.
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
    chunks: Mutex<Vec<(u64, u64)>>,
}

#[async_trait::async_trait]
impl UploadProgress for Progress {
    async fn started(&self, total_bytes: u64) {
        self.started.lock().unwrap().push(total_bytes);
    }

    async fn session_opened(&self, _session: &herald_infrastructure::secret::Secret) {}

    async fn chunk_sent(&self, bytes_sent: u64, total_bytes: u64) {
        self.chunks.lock().unwrap().push((bytes_sent, total_bytes));
    }
}

/// Serves media to upload: `/bytes/{n}` (with Content-Length), `/stream/{n}` (chunked, no
/// length) and `/status/{code}`.
struct MediaServer {
    base: String,
    handle: ServerHandle,
}

impl MediaServer {
    async fn start() -> Self {
        let server = HttpServer::new(|| {
            App::new()
                .route("/bytes/{n}", web::get().to(sized))
                .route("/stream/{n}", web::get().to(streamed))
                .route("/status/{code}", web::get().to(status))
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            base: format!("http://{addr}"),
            handle,
        }
    }
}

impl Drop for MediaServer {
    fn drop(&mut self) {
        // The stop command is sent when called; awaiting it is not possible in drop.
        drop(self.handle.stop(false));
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

async fn sized(n: web::Path<usize>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .body(pattern(*n))
}

async fn streamed(n: web::Path<usize>) -> HttpResponse {
    let body = web::Bytes::from(pattern(*n));
    HttpResponse::Ok().streaming(futures::stream::iter([Ok::<_, std::io::Error>(body)]))
}

async fn status(code: web::Path<u16>) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(*code).unwrap()).finish()
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_exchanges_the_code_and_reads_the_account() {
    let env = Env::start().await;
    let grant = env.connect().await;

    assert!(
        grant.refresh_token.is_some(),
        "offline.access gives a refresh token"
    );
    let expires_in = grant.expires_at.unwrap() - Utc::now();
    assert!((7100..=7200).contains(&expires_in.num_seconds()));
    for scope in [
        "tweet.read",
        "tweet.write",
        "users.read",
        "media.write",
        "offline.access",
    ] {
        assert!(grant.scopes.iter().any(|s| s == scope), "missing {scope}");
    }
    let issued = &env.sandbox.x_state().tokens_issued[0];
    assert_eq!(issued.access_token, grant.access_token.expose());

    let account = env.adapter.account(&grant.access_token).await.unwrap();
    assert_eq!(account.account_id, "1500000000000000001");
    assert_eq!(account.username, "herald_sandbox");
    assert_eq!(account.display_name, "Herald Sandbox");
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_rotates_and_a_used_refresh_token_needs_reauthorization() {
    let env = Env::start().await;
    let first = env.connect().await;
    let old_refresh = first.refresh_token.clone().unwrap();

    let second = env
        .adapter
        .refresh(&AccountProfile::default(), &old_refresh)
        .await
        .unwrap();
    assert_ne!(second.access_token, first.access_token);
    assert_ne!(second.refresh_token.as_ref(), Some(&old_refresh));
    env.adapter.account(&second.access_token).await.unwrap();
    let stale = env.adapter.account(&first.access_token).await.unwrap_err();
    expect_class(&stale, ErrorClass::Auth, &first);

    let reused = env
        .adapter
        .refresh(&AccountProfile::default(), &old_refresh)
        .await
        .unwrap_err();
    expect_class(&reused, ErrorClass::ReauthorizationRequired, &first);
    assert!(reused.message.contains("reconnect"), "{reused}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_client_secret_is_a_permanent_misconfiguration() {
    let env = Env::start_with(|c| c.client_secret = Some(Secret::new("wrong"))).await;
    let failure = env
        .adapter
        .refresh(
            &AccountProfile::default(),
            &Secret::new("whatever-refresh-token"),
        )
        .await
        .unwrap_err();
    assert_eq!(failure.class, ErrorClass::Permanent);
    assert!(failure.message.contains("misconfigured"), "{failure}");
    assert!(!failure.message.contains("wrong"));
}

#[tokio::test(flavor = "multi_thread")]
async fn revoke_ends_the_grant() {
    let env = Env::start().await;
    let grant = env.connect().await;
    env.adapter
        .revoke(&AccountProfile::default(), &grant)
        .await
        .unwrap();

    let api = env.adapter.account(&grant.access_token).await.unwrap_err();
    expect_class(&api, ErrorClass::Auth, &grant);
    let refresh = env
        .adapter
        .refresh(
            &AccountProfile::default(),
            grant.refresh_token.as_ref().unwrap(),
        )
        .await
        .unwrap_err();
    expect_class(&refresh, ErrorClass::ReauthorizationRequired, &grant);
}

#[tokio::test(flavor = "multi_thread")]
async fn text_post_reports_its_id_url_and_rate_limit_window() {
    let env = Env::start().await;
    let grant = env.connect().await;
    let gate = Gate::default();

    let post = env
        .adapter
        .create_post(&grant.access_token, &text("Hello from Herald"), &gate)
        .await
        .unwrap();

    let state = env.sandbox.x_state();
    assert_eq!(state.posts.len(), 1);
    assert_eq!(state.posts[0].id, post.post_id);
    assert_eq!(state.posts[0].text, "Hello from Herald");
    assert_eq!(
        post.url,
        format!("{}/i/web/status/{}", env.sandbox.x_base_url(), post.post_id)
    );
    assert_eq!(*gate.acquired.lock().unwrap(), ["create_tweet"]);
    let observed = gate.observed.lock().unwrap();
    assert_eq!(observed[0].0, "create_tweet");
    assert_eq!(observed[0].1, Some(99));
    assert!(observed[0].2.unwrap() > Utc::now());
}

#[tokio::test(flavor = "multi_thread")]
async fn post_with_two_images() {
    let env = Env::start().await;
    let grant = env.connect().await;
    let mut ids = Vec::new();
    for size in [1000, 70_000] {
        let item = env.media_item(&format!("/bytes/{size}"), MediaKind::Image, "image/png");
        ids.push(env.upload(&grant, &item).await.unwrap());
    }

    let mut draft = text("two pictures");
    draft.media_ids = ids.clone();
    let id = env.post(&grant, &draft).await.unwrap();

    let state = env.sandbox.x_state();
    let post = state.posts.iter().find(|p| p.id == id).unwrap();
    assert_eq!(post.media_ids, ids);
    assert!(state
        .media
        .iter()
        .all(|m| m.media_category == "tweet_image" && m.state == "succeeded"));
    assert_eq!(
        state.media[1].segments,
        [0, 1],
        "70 000 bytes take two 64 KiB segments"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn video_streams_in_segments_reports_progress_and_waits_for_processing() {
    let env = Env::start().await;
    let grant = env.connect().await;
    let total = 300_000u64;
    let item = env.media_item(&format!("/bytes/{total}"), MediaKind::Video, "video/mp4");
    let (gate, progress) = (Gate::default(), Progress::default());

    let media_id = env
        .adapter
        .upload_media(
            &grant.access_token,
            &MediaUpload::single(&item, &PostDraft::default()),
            &gate,
            &progress,
        )
        .await
        .unwrap();

    let state = env.sandbox.x_state();
    let media = state.media.iter().find(|m| m.id == media_id).unwrap();
    assert_eq!(media.media_category, "tweet_video");
    assert_eq!(media.media_type, "video/mp4");
    assert_eq!((media.total_bytes, media.bytes_received), (total, total));
    assert_eq!(media.segments, [0, 1, 2, 3, 4]);
    assert_eq!(media.state, "succeeded");

    assert_eq!(*progress.started.lock().unwrap(), [total]);
    let chunks = progress.chunks.lock().unwrap().clone();
    let chunk = CHUNK as u64;
    assert_eq!(
        chunks,
        [
            (chunk, total),
            (2 * chunk, total),
            (3 * chunk, total),
            (4 * chunk, total),
            (total, total)
        ]
    );
    let acquired = gate.acquired.lock().unwrap().clone();
    assert_eq!(acquired[0], "media_initialize");
    assert_eq!(acquired.iter().filter(|e| *e == "media_append").count(), 5);
    assert!(acquired.contains(&"media_finalize".to_owned()));
    assert!(
        acquired.contains(&"media_status".to_owned()),
        "video processing is polled"
    );

    let mut draft = text("a video");
    draft.media_ids = vec![media_id];
    env.post(&grant, &draft).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn poll_post() {
    let env = Env::start().await;
    let grant = env.connect().await;
    let mut draft = text("Tabs or spaces?");
    draft.poll = Some(Poll {
        options: vec!["Tabs".into(), "Spaces".into()],
        duration_minutes: 1440,
        question: None,
    });
    let id = env.post(&grant, &draft).await.unwrap();

    let state = env.sandbox.x_state();
    let poll = state
        .posts
        .iter()
        .find(|p| p.id == id)
        .unwrap()
        .poll
        .clone();
    let poll = poll.expect("poll attached");
    assert_eq!(poll.options, ["Tabs", "Spaces"]);
    assert_eq!(poll.duration_minutes, 1440);
}

#[tokio::test(flavor = "multi_thread")]
async fn reply_chain() {
    let env = Env::start().await;
    let grant = env.connect().await;
    let mut previous: Option<String> = None;
    let mut ids = Vec::new();
    for part in ["1/3 a long story", "2/3 continues", "3/3 ends"] {
        let mut draft = text(part);
        draft.reply_to = previous.clone();
        let id = env.post(&grant, &draft).await.unwrap();
        previous = Some(id.clone());
        ids.push(id);
    }

    let posts = env.sandbox.x_state().posts;
    assert_eq!(posts[0].in_reply_to_tweet_id, None);
    assert_eq!(posts[1].in_reply_to_tweet_id.as_ref(), Some(&ids[0]));
    assert_eq!(posts[2].in_reply_to_tweet_id.as_ref(), Some(&ids[1]));
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limited_post_waits_for_retry_after() {
    let env = Env::start().await;
    let grant = env.connect().await;
    env.fault(
        XEndpoint::CreateTweet,
        Fault::RateLimited {
            retry_after_secs: 30,
        },
    );
    let gate = Gate::default();

    let result = env
        .adapter
        .create_post(&grant.access_token, &text("too fast"), &gate)
        .await;

    let failure = expect_failed(result.map(|p| p.post_id));
    expect_class(&failure, ErrorClass::RateLimited, &grant);
    assert_eq!(failure.code, "http_429");
    let wait = failure.not_before.expect("not_before set") - Utc::now();
    assert!((28..=31).contains(&wait.num_seconds()), "{wait}");
    assert_eq!(gate.observed.lock().unwrap()[0].1, Some(0));
    assert!(env.sandbox.x_state().posts.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn server_error_is_retryable() {
    let env = Env::start().await;
    let grant = env.connect().await;
    env.fault(XEndpoint::CreateTweet, Fault::ServerError { status: 503 });
    let failure = expect_failed(env.post(&grant, &text("busy")).await);
    expect_class(&failure, ErrorClass::Retryable, &grant);
    assert_eq!(failure.code, "http_503");
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_post_is_permanent_with_advice() {
    let env = Env::start().await;
    let grant = env.connect().await;
    env.post(&grant, &text("same words")).await.unwrap();

    let failure = expect_failed(env.post(&grant, &text("same words")).await);
    expect_class(&failure, ErrorClass::Permanent, &grant);
    assert_eq!(failure.code, herald_domain::failure::DUPLICATE_POST);
    assert!(failure.message.contains("change the text"));
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_answer_is_unknown_and_reconciliation_finds_the_post() {
    let env = Env::start_with(|c| c.request_timeout = Duration::from_secs(1)).await;
    let grant = env.connect().await;
    let account = env.adapter.account(&grant.access_token).await.unwrap();
    let since = Utc::now();
    env.fault(
        XEndpoint::CreateTweet,
        Fault::TimeoutAfterSuccess { secs: 3.0 },
    );
    let draft = text("did this go out?");

    let outcome = env.post(&grant, &draft).await;
    assert!(
        matches!(outcome, Err(PostError::OutcomeUnknown(_))),
        "{outcome:?}"
    );

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
        .expect("the post was created");
    let posts = env.sandbox.x_state().posts;
    assert_eq!(posts.len(), 1);
    assert_eq!(found.post_id, posts[0].id);

    // A reply is matched by its parent too.
    let mut reply = text("and a reply");
    reply.reply_to = Some(found.post_id.clone());
    let reply_id = env.post(&grant, &reply).await.unwrap();
    let found_reply = env
        .adapter
        .find_post(
            &grant.access_token,
            since,
            &PostDraft {
                account: account.clone(),
                ..reply.clone()
            },
            &Gate::default(),
        )
        .await
        .unwrap();
    assert_eq!(found_reply.map(|p| p.post_id), Some(reply_id));
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_without_effect_is_unknown_and_reconciliation_finds_nothing() {
    let env = Env::start_with(|c| c.request_timeout = Duration::from_secs(1)).await;
    let grant = env.connect().await;
    let account = env.adapter.account(&grant.access_token).await.unwrap();
    let since = Utc::now();
    env.fault(XEndpoint::CreateTweet, Fault::Timeout { secs: 3.0 });
    let draft = text("never arrived");

    let outcome = env.post(&grant, &draft).await;
    assert!(matches!(outcome, Err(PostError::OutcomeUnknown(_))));
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
        .unwrap();
    assert_eq!(found, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_refused_is_retryable_because_nothing_was_sent() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/x", closed.local_addr().unwrap());
    drop(closed);
    let adapter = XAdapter::new(XConfig::for_base(
        Url::parse(&base).unwrap(),
        CLIENT_ID,
        None,
    ))
    .unwrap();

    let result = adapter
        .create_post(&Secret::new("token"), &text("hello"), &Gate::default())
        .await;

    let failure = expect_failed(result.map(|p| p.post_id));
    assert_eq!(failure.class, ErrorClass::Retryable, "{failure}");
}

#[tokio::test(flavor = "multi_thread")]
async fn exhausted_shared_limit_sends_nothing() {
    let env = Env::start().await;
    let grant = env.connect().await;
    let until = Utc::now() + TimeDelta::minutes(5);
    let gate = Gate {
        refuse_until: Some(until),
        ..Gate::default()
    };

    let result = env
        .adapter
        .create_post(&grant.access_token, &text("wait"), &gate)
        .await;

    let failure = expect_failed(result.map(|p| p.post_id));
    assert_eq!(failure.class, ErrorClass::RateLimited);
    assert_eq!(failure.not_before, Some(until));
    let requests = env.sandbox.x_state().requests;
    assert!(!requests.iter().any(|r| r.path.ends_with("/2/tweets")));
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_token_is_auth() {
    let env = Env::start().await;
    let grant = env.connect().await;
    env.fault(XEndpoint::CreateTweet, Fault::ExpireToken);
    let failure = expect_failed(env.post(&grant, &text("stale token")).await);
    expect_class(&failure, ErrorClass::Auth, &grant);
    assert_eq!(failure.code, "http_401");
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_media_is_permanent_with_the_reason() {
    let env = Env::start().await;
    let grant = env.connect().await;

    env.fault(XEndpoint::MediaFinalize, Fault::RejectMedia);
    let video = env.media_item("/bytes/100000", MediaKind::Video, "video/mp4");
    let failure = env.upload(&grant, &video).await.unwrap_err();
    expect_class(&failure, ErrorClass::Permanent, &grant);
    assert!(
        failure
            .message
            .contains("X could not process the video: Invalid or Unsupported media"),
        "{failure}"
    );
    assert!(failure
        .message
        .contains("check its format against X's limits"));

    // Images are processed synchronously: FINALIZE itself refuses.
    env.fault(XEndpoint::MediaFinalize, Fault::RejectMedia);
    let image = env.media_item("/bytes/1000", MediaKind::Image, "image/png");
    let failure = env.upload(&grant, &image).await.unwrap_err();
    expect_class(&failure, ErrorClass::Permanent, &grant);
    assert!(
        failure.message.contains("Invalid or Unsupported media"),
        "{failure}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn media_source_problems_are_classified() {
    let env = Env::start().await;
    let grant = env.connect().await;

    let no_length = env.media_item("/stream/5000", MediaKind::Image, "image/png");
    let failure = env.upload(&grant, &no_length).await.unwrap_err();
    assert_eq!(failure.class, ErrorClass::Permanent);
    assert!(
        failure.message.contains("must send Content-Length"),
        "{failure}"
    );

    let gone = env.media_item("/status/404", MediaKind::Image, "image/png");
    assert_eq!(
        env.upload(&grant, &gone).await.unwrap_err().class,
        ErrorClass::Permanent
    );

    let flaky = env.media_item("/status/503", MediaKind::Image, "image/png");
    assert_eq!(
        env.upload(&grant, &flaky).await.unwrap_err().class,
        ErrorClass::Retryable
    );

    assert!(env.sandbox.x_state().media.is_empty(), "nothing reached X");
}

#[tokio::test(flavor = "multi_thread")]
async fn media_rate_limit_is_classified_mid_upload() {
    let env = Env::start().await;
    let grant = env.connect().await;
    env.fault(
        XEndpoint::MediaAppend,
        Fault::RateLimited {
            retry_after_secs: 60,
        },
    );
    let video = env.media_item("/bytes/100000", MediaKind::Video, "video/mp4");
    let failure = env.upload(&grant, &video).await.unwrap_err();
    expect_class(&failure, ErrorClass::RateLimited, &grant);
    assert!(failure.not_before.unwrap() > Utc::now() + TimeDelta::seconds(55));
}
