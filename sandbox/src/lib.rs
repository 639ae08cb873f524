//! Herald sandbox: simulated social-platform HTTP servers.
//!
//! Each platform "twin" speaks the platform's real request/response shapes and
//! error codes (see `platform-facts.md`), and adds two control surfaces that the
//! real platforms do not have: fault injection and a read-only state dump. The
//! twins are real actix-web servers, used by end-to-end tests, benchmarks and
//! `herald serve --sandbox`.
//!
//! Layout: platform-independent machinery lives at the crate root
//! ([`faults`], [`oauth`], [`ratelimit`], [`multipart`], [`inspect`]), with what every twin
//! shares: its state behind a lock that cannot be taken twice by one request (`lock`), and the
//! fault queue, request log, state snapshot and `/_sandbox` control routes over it (`twin`).
//! Each platform has its own module mounted under its own path prefix (X: `/x`, Threads:
//! `/threads`, YouTube: `/youtube`, LinkedIn: `/linkedin`, TikTok: `/tiktok`, Facebook Pages
//! and Instagram: `/meta`, Reddit: `/reddit`; see [`meta::graph`] for the Graph API pieces the
//! Meta twins and Threads share); [`media`] serves sample files to publish.
#![forbid(unsafe_code)]

pub mod faults;
pub mod inspect;
pub mod linkedin;
mod lock;
pub mod media;
pub mod meta;
pub mod multipart;
pub mod oauth;
mod outbound;
pub mod ratelimit;
pub mod reddit;
pub mod threads;
pub mod tiktok;
mod twin;
pub mod x;
pub mod youtube;

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::{dev::ServerHandle, web, App, HttpServer};

use crate::twin::Twin as _;
pub use faults::Fault;
pub use inspect::RequestRecord;
pub use linkedin::{
    LinkedInConfig, LinkedInEndpoint, LinkedInIssuedToken, LinkedInMediaSnapshot,
    LinkedInOrganization, LinkedInPostSnapshot, LinkedInStateSnapshot,
};
pub use meta::{
    MetaConfig, MetaContainerSnapshot, MetaEndpoint, MetaIgMediaSnapshot, MetaIgUploadRecord,
    MetaPagePostSnapshot, MetaPageSpec, MetaReelUploadRecord, MetaRevokedPermission,
    MetaStateSnapshot, MetaUsageEvent, MetaUserSpec, MetaVideoSnapshot,
};
pub use reddit::{
    LinkType, RedditAssetSnapshot, RedditConfig, RedditEndpoint, RedditIssuedToken,
    RedditPostSnapshot, RedditStateSnapshot, RedditSubreddit,
};
pub use threads::{
    ThreadsConfig, ThreadsContainerSnapshot, ThreadsEndpoint, ThreadsIssuedToken,
    ThreadsPostSnapshot, ThreadsStateSnapshot,
};
pub use tiktok::{
    TiktokConfig, TiktokEndpoint, TiktokIssuedToken, TiktokPostSnapshot, TiktokPublishSnapshot,
    TiktokRefusal, TiktokStateSnapshot, TiktokUploadRecord,
};
pub use x::{
    XConfig, XEndpoint, XIssuedTokens, XMediaSnapshot, XPollSnapshot, XPostSnapshot, XRateLimits,
    XStateSnapshot,
};
pub use youtube::{
    YouTubeByteRange, YouTubeConfig, YouTubeEndpoint, YouTubeQuotaModel, YouTubeQuotaSnapshot,
    YouTubeSessionSnapshot, YouTubeStateSnapshot, YouTubeVideoSnapshot,
};

/// Largest request body any twin accepts. Media chunks are typically 1–5 MB and
/// JSON appends carry them base64-encoded, so this leaves generous headroom.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Configuration of every platform twin.
#[derive(Debug, Clone, Default)]
pub struct SandboxConfig {
    /// The X (Twitter) API v2 twin.
    pub x: XConfig,
    /// The Threads API twin.
    pub threads: ThreadsConfig,
    /// The YouTube Data API v3 twin (with Google's OAuth endpoints).
    pub youtube: YouTubeConfig,
    /// The LinkedIn twin.
    pub linkedin: LinkedInConfig,
    /// The TikTok twin.
    pub tiktok: TiktokConfig,
    /// The Meta Graph twin (Facebook Pages and Instagram).
    pub meta: MetaConfig,
    /// The Reddit twin.
    pub reddit: RedditConfig,
}

/// A twin as an adapter reaches it: its base URL and the app (client id and secret) it
/// accepts. See [`Sandbox::twin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwinApp {
    pub base_url: String,
    pub client_id: String,
    pub client_secret: String,
}

/// A running sandbox server hosting all platform twins on one port.
pub struct Sandbox {
    addr: SocketAddr,
    /// Each twin's path with the client id and secret it accepts.
    apps: Vec<(&'static str, String, String)>,
    handle: ServerHandle,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    x: Arc<x::XState>,
    threads: Arc<threads::ThreadsState>,
    youtube: Arc<youtube::YouTubeState>,
    linkedin: Arc<linkedin::LinkedInState>,
    tiktok: Arc<tiktok::TiktokState>,
    meta: Arc<meta::MetaState>,
    reddit: Arc<reddit::RedditState>,
    media: Arc<media::MediaRequests>,
}

impl Sandbox {
    /// Binds on `addr` (use `"127.0.0.1:0"` in tests), starts the actix server on
    /// the current tokio runtime and returns once the socket is listening.
    pub async fn start(addr: &str, config: SandboxConfig) -> std::io::Result<Sandbox> {
        let app = |path, id: &String, secret: &String| (path, id.clone(), secret.clone());
        let apps = vec![
            app("x", &config.x.client_id, &config.x.client_secret),
            app(
                "threads",
                &config.threads.client_id,
                &config.threads.client_secret,
            ),
            app(
                "youtube",
                &config.youtube.client_id,
                &config.youtube.client_secret,
            ),
            app(
                "linkedin",
                &config.linkedin.client_id,
                &config.linkedin.client_secret,
            ),
            app(
                "tiktok",
                &config.tiktok.client_key,
                &config.tiktok.client_secret,
            ),
            app("meta", &config.meta.client_id, &config.meta.client_secret),
            app(
                "reddit",
                &config.reddit.client_id,
                &config.reddit.client_secret,
            ),
        ];
        // State is created once, outside the per-worker factory, so all workers
        // share the same posts, tokens, faults and rate-limit windows.
        let x_state = Arc::new(x::XState::new(config.x));
        let x_data = web::Data::from(x_state.clone());
        let threads_state = Arc::new(threads::ThreadsState::new(config.threads));
        let threads_data = web::Data::from(threads_state.clone());
        let youtube_state = Arc::new(youtube::YouTubeState::new(config.youtube));
        let youtube_data = web::Data::from(youtube_state.clone());
        let linkedin_state = Arc::new(linkedin::LinkedInState::new(config.linkedin));
        let linkedin_data = web::Data::from(linkedin_state.clone());
        let tiktok_state = Arc::new(tiktok::TiktokState::new(config.tiktok));
        let tiktok_data = web::Data::from(tiktok_state.clone());
        let meta_state = Arc::new(meta::MetaState::new(config.meta));
        let meta_data = web::Data::from(meta_state.clone());
        let reddit_state = Arc::new(reddit::RedditState::new(config.reddit));
        let reddit_data = web::Data::from(reddit_state.clone());
        let media_requests = Arc::new(media::MediaRequests::default());
        let media_data = web::Data::from(media_requests.clone());

        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
                .service(x::scope(x_data.clone()))
                .service(threads::scope(threads_data.clone()))
                .service(youtube::scope(youtube_data.clone()))
                .service(linkedin::scope(linkedin_data.clone()))
                .service(tiktok::scope(tiktok_data.clone()))
                .service(meta::scope(meta_data.clone()))
                .service(reddit::scope(reddit_data.clone()))
                .service(media::scope(media_data.clone()))
        })
        .workers(2)
        // Embedded in tests and in `herald serve`: the host process owns signals.
        .disable_signals()
        .shutdown_timeout(1)
        .bind(addr)?;

        let addr = *server
            .addrs()
            .first()
            .ok_or_else(|| std::io::Error::other("sandbox bound no address"))?;
        let server = server.run();
        let handle = server.handle();
        let task = tokio::spawn(server);
        tracing::info!(%addr, "sandbox listening");

        Ok(Sandbox {
            addr,
            apps,
            handle,
            task: Some(task),
            x: x_state,
            threads: threads_state,
            youtube: youtube_state,
            linkedin: linkedin_state,
            tiktok: tiktok_state,
            meta: meta_state,
            reddit: reddit_state,
            media: media_requests,
        })
    }

    /// Every request for a sample file under `/media`, with the range it asked for.
    pub fn media_requests(&self) -> Vec<media::MediaRequest> {
        self.media.all()
    }

    /// The socket address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL of the server, e.g. `http://127.0.0.1:40123`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The twin at `path` (`x`, `threads`, `youtube`, `linkedin`, `tiktok`, `meta`, `reddit`):
    /// where it listens and the app it accepts; what Herald's platform registry points an
    /// adapter at.
    pub fn twin(&self, path: &str) -> Option<TwinApp> {
        self.apps
            .iter()
            .find(|(p, _, _)| *p == path)
            .map(|(path, id, secret)| TwinApp {
                base_url: format!("{}/{path}", self.base_url()),
                client_id: id.clone(),
                client_secret: secret.clone(),
            })
    }

    /// Base URL of the X twin (`base_url() + "/x"`); X API paths such as
    /// `/2/tweets` and `/i/oauth2/authorize` are appended to it.
    pub fn x_base_url(&self) -> String {
        format!("{}/x", self.base_url())
    }

    /// A snapshot of the X twin's state (posts, media, issued tokens, requests).
    pub fn x_state(&self) -> XStateSnapshot {
        self.x.snapshot()
    }

    /// Queues `fault` for the next `times` requests to `endpoint` of the X twin.
    pub fn inject_x_fault(&self, endpoint: XEndpoint, fault: Fault, times: u32) {
        self.x.inject_fault(endpoint, fault, times);
    }

    /// Removes every queued X fault.
    pub fn clear_x_faults(&self) {
        self.x.clear_faults();
    }

    /// Base URL of the Threads twin (`base_url() + "/threads"`); Threads API paths such as
    /// `/me` and `/oauth/authorize` are appended to it.
    pub fn threads_base_url(&self) -> String {
        format!("{}/threads", self.base_url())
    }

    /// A snapshot of the Threads twin's state (posts, containers, issued tokens, requests).
    pub fn threads_state(&self) -> ThreadsStateSnapshot {
        self.threads.snapshot()
    }

    /// Queues `fault` for the next `times` requests to `endpoint` of the Threads twin.
    pub fn inject_threads_fault(&self, endpoint: ThreadsEndpoint, fault: Fault, times: u32) {
        self.threads.inject_fault(endpoint, fault, times);
    }

    /// Removes every queued Threads fault.
    pub fn clear_threads_faults(&self) {
        self.threads.clear_faults();
    }

    /// Base URL of the YouTube twin (`base_url() + "/youtube"`): Google's OAuth paths
    /// (`/o/oauth2/v2/auth`, `/token`, `/revoke`) and the API paths (`/youtube/v3/...`,
    /// `/upload/youtube/v3/...`) are appended to it.
    pub fn youtube_base_url(&self) -> String {
        format!("{}/youtube", self.base_url())
    }

    /// A snapshot of the YouTube twin's state (videos, sessions, byte ranges, quota, requests).
    pub fn youtube_state(&self) -> YouTubeStateSnapshot {
        self.youtube.snapshot()
    }

    /// Queues `fault` for the next `times` requests to `endpoint` of the YouTube twin.
    pub fn inject_youtube_fault(&self, endpoint: YouTubeEndpoint, fault: Fault, times: u32) {
        self.youtube.inject_fault(endpoint, fault, times);
    }

    /// Removes every queued YouTube fault.
    pub fn clear_youtube_faults(&self) {
        self.youtube.clear_faults();
    }

    /// Sets the YouTube project's usage for today (units and `videos.insert` calls).
    pub fn set_youtube_quota_usage(&self, units_used: Option<u64>, inserts: Option<u64>) {
        self.youtube.set_quota_usage(units_used, inserts);
    }

    /// Every open YouTube upload session answers 404 from now on.
    pub fn expire_youtube_sessions(&self) -> usize {
        self.youtube.expire_sessions()
    }

    /// Base URL of the LinkedIn twin (`base_url() + "/linkedin"`); LinkedIn paths such as
    /// `/rest/posts` and `/oauth/v2/authorization` are appended to it.
    pub fn linkedin_base_url(&self) -> String {
        format!("{}/linkedin", self.base_url())
    }

    /// A snapshot of the LinkedIn twin's state (posts, media, issued tokens, requests).
    pub fn linkedin_state(&self) -> LinkedInStateSnapshot {
        self.linkedin.snapshot()
    }

    /// Queues `fault` for the next `times` requests to `endpoint` of the LinkedIn twin.
    pub fn inject_linkedin_fault(&self, endpoint: LinkedInEndpoint, fault: Fault, times: u32) {
        self.linkedin.inject_fault(endpoint, fault, times);
    }

    /// Removes every queued LinkedIn fault.
    pub fn clear_linkedin_faults(&self) {
        self.linkedin.clear_faults();
    }

    /// Base URL of the TikTok twin (`base_url() + "/tiktok"`); TikTok API paths such as
    /// `/v2/oauth/token/` and `/v2/auth/authorize/` are appended to it.
    pub fn tiktok_base_url(&self) -> String {
        format!("{}/tiktok", self.base_url())
    }

    /// A snapshot of the TikTok twin's state (publishes, posts, uploads, tokens, requests).
    pub fn tiktok_state(&self) -> TiktokStateSnapshot {
        self.tiktok.snapshot()
    }

    /// Queues `fault` for the next `times` requests to `endpoint` of the TikTok twin.
    pub fn inject_tiktok_fault(&self, endpoint: TiktokEndpoint, fault: Fault, times: u32) {
        self.tiktok.inject_fault(endpoint, fault, times);
    }

    /// Removes every queued TikTok fault, error code and fail reason.
    pub fn clear_tiktok_faults(&self) {
        self.tiktok.clear_faults();
    }

    /// Base URL of the Meta twin (`base_url() + "/meta"`); versioned Graph paths such as
    /// `/v25.0/me/accounts` and `/v25.0/dialog/oauth` are appended to it.
    pub fn meta_base_url(&self) -> String {
        format!("{}/meta", self.base_url())
    }

    /// A snapshot of the Meta twin's state (Pages, posts, videos, containers, media, tokens).
    pub fn meta_state(&self) -> MetaStateSnapshot {
        self.meta.snapshot()
    }

    /// Queues `fault` for the next `times` requests to `endpoint` of the Meta twin.
    pub fn inject_meta_fault(&self, endpoint: MetaEndpoint, fault: Fault, times: u32) {
        self.meta.inject_fault(endpoint, fault, times);
    }

    /// Removes every queued Meta fault.
    pub fn clear_meta_faults(&self) {
        self.meta.clear_faults();
    }

    /// Declares (or redeclares) a Facebook user's Pages and linked Instagram accounts.
    pub fn define_meta_user(&self, spec: &MetaUserSpec) {
        self.meta.define_user(spec);
    }

    /// Base URL of the Reddit twin (`base_url() + "/reddit"`); Reddit paths such as
    /// `/api/submit` and `/api/v1/authorize` are appended to it.
    pub fn reddit_base_url(&self) -> String {
        format!("{}/reddit", self.base_url())
    }

    /// A snapshot of the Reddit twin's state (posts, assets, issued tokens, requests).
    pub fn reddit_state(&self) -> RedditStateSnapshot {
        self.reddit.snapshot()
    }

    /// Queues `fault` for the next `times` requests to `endpoint` of the Reddit twin.
    pub fn inject_reddit_fault(&self, endpoint: RedditEndpoint, fault: Fault, times: u32) {
        self.reddit.inject_fault(endpoint, fault, times);
    }

    /// Removes every queued Reddit fault.
    pub fn clear_reddit_faults(&self) {
        self.reddit.clear_faults();
    }

    /// Stops the server without waiting for in-flight requests (some may be
    /// sleeping on purpose because of a timeout fault).
    pub async fn stop(mut self) {
        self.handle.stop(false).await;
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "sandbox server task ended abnormally");
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.task.is_some() {
            // The stop command is sent eagerly; the returned future only awaits
            // completion, which a synchronous drop cannot do.
            drop(self.handle.stop(false));
        }
    }
}

/// The current time as RFC 3339 with millisecond precision, like the platforms
/// render it (`2025-01-02T03:04:05.678Z`).
pub(crate) fn rfc3339_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The current Unix time in seconds.
pub(crate) fn epoch_now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn sandbox_can_be_shared_across_tasks() {
        assert_send_sync::<Sandbox>();
        assert_send_sync::<XStateSnapshot>();
        assert_send_sync::<ThreadsStateSnapshot>();
        assert_send_sync::<YouTubeStateSnapshot>();
        assert_send_sync::<LinkedInStateSnapshot>();
        assert_send_sync::<TiktokStateSnapshot>();
        assert_send_sync::<MetaStateSnapshot>();
        assert_send_sync::<RedditStateSnapshot>();
    }
}
