//! Platform adapters: one module per platform, all behind `PlatformAdapter`. Every base URL and
//! OAuth endpoint comes from configuration, so an adapter talks to the real platform, to the
//! sandbox, or to any standards-compliant OAuth server.
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use herald_domain::connection::AccountProfile;
use herald_domain::{ErrorClass, MediaItem, Platform, PlatformFailure, Poll, PublishOptions};

use crate::secret::Secret;

pub mod facebook_pages;
pub mod http;
pub mod instagram;
pub mod linkedin;
pub mod meta;
pub mod reddit;
pub mod registry;
pub mod settings;
pub mod threads;
pub mod tiktok;
pub mod x;
pub mod youtube;

/// Tokens a platform granted. Goes straight into the vault; never into an event or a log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenGrant {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Vec<String>,
    /// When the refresh token itself stops working (LinkedIn: 365 days after the first
    /// authorization, however often it is used); the user must log in again by then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_expires_at: Option<DateTime<Utc>>,
    /// The person who granted it, where a platform's permissions belong to the person rather
    /// than to a token (`facebook:{app-scoped user id}`): two logins of one person share
    /// them, and revoking ends both. Not a secret; kept with the grant, unchanged by renewals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_id: Option<String>,
}

/// The start of an OAuth authorization: where to send the user, the `state` to expect back and
/// the PKCE verifier to keep (sealed) until the callback.
#[derive(Debug, Clone)]
pub struct AuthorizationStart {
    pub url: url::Url,
    pub state: String,
    pub pkce_verifier: Secret,
}

/// One post to create. For a thread, the publisher creates the parts one by one, each replying
/// to the previous part.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PostDraft {
    /// The connected account the post is published as (the connection's account: a LinkedIn
    /// member or organisation, a Facebook Page, an Instagram business account, ...).
    pub account: AccountProfile,
    pub text: String,
    /// The title, where the platform shows one (already checked and derived when needed).
    pub title: Option<String>,
    /// A link attachment (Facebook, LinkedIn, Reddit link posts).
    pub link: Option<String>,
    /// What `upload_media` returned for each media item, in order (empty while uploading).
    pub media_ids: Vec<String>,
    /// The media items themselves, in the same order.
    pub media: Vec<MediaItem>,
    pub poll: Option<Poll>,
    pub reply_to: Option<String>,
    /// Per-platform options from the request; each adapter reads its own part.
    pub options: PublishOptions,
}

/// One media item to upload, with the post it belongs to: on some platforms the upload itself
/// creates the post (YouTube, Facebook video) and needs its metadata.
#[derive(Debug, Clone, Copy)]
pub struct MediaUpload<'a> {
    pub item: &'a MediaItem,
    /// Position of the item in the post (0-based) and how many items the post has.
    pub index: usize,
    pub count: usize,
    pub post: &'a PostDraft,
    /// A resumable session an earlier attempt opened and did not finish.
    pub resume: Option<&'a UploadResume>,
}

impl<'a> MediaUpload<'a> {
    /// The only media item of `post`, uploaded from the start.
    pub fn single(item: &'a MediaItem, post: &'a PostDraft) -> Self {
        Self {
            item,
            index: 0,
            count: 1,
            post,
            resume: None,
        }
    }
}

/// Where an interrupted resumable upload stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadResume {
    /// The handle the adapter gave `UploadProgress::session_opened`.
    pub session: Secret,
    /// Bytes the platform confirmed (the last `chunk_sent`).
    pub bytes_confirmed: u64,
}

/// An account a login gives access to. `grant` is the account's own token where it has one
/// (a Facebook Page token); otherwise the login's grant is used.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConnectedAccount {
    pub profile: AccountProfile,
    pub grant: Option<TokenGrant>,
}

/// A post that exists on the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedPost {
    pub post_id: String,
    pub url: String,
}

/// Why creating a post did not return a post.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    /// The platform answered with an error: the post does not exist.
    #[error(transparent)]
    Failed(#[from] PlatformFailure),
    /// The request may have reached the platform (timeout or connection lost after sending):
    /// the post may exist. Reconcile before trying again.
    #[error("the outcome is unknown: {0}")]
    OutcomeUnknown(String),
}

/// The gate key of a budget that every account connected through one application shares (the
/// platform counts it per client id: Reddit's requests per minute, LinkedIn's application daily
/// limit, Meta's `X-App-Usage`), rather than one account's: `app:{client_id}:{endpoint}`. Any
/// `RateLimitGate` method takes it where it takes an endpoint. Only the client id goes in: it is
/// public (it appears in every authorization URL); never pass a secret.
/// A kind of media the platform does not take (`what`), and what to post instead. The rules
/// table refuses such media when a job is accepted; this answers a job accepted under a
/// deployment's looser table.
pub(crate) fn media_not_taken(platform: &str, what: &str, instead: &str) -> PlatformFailure {
    PlatformFailure::new(
        ErrorClass::Permanent,
        "unsupported_media",
        format!("{platform} does not take {what}; {instead}"),
    )
}

pub fn app_key(client_id: &str, endpoint: &str) -> String {
    format!("{APP_KEY_PREFIX}{client_id}:{endpoint}")
}

const APP_KEY_PREFIX: &str = "app:";

/// Whether `endpoint` names an application-wide budget (see [`app_key`]).
pub fn is_app_key(endpoint: &str) -> bool {
    endpoint.starts_with(APP_KEY_PREFIX)
}

/// `endpoint` as a message names it: an application-wide budget says so (the client id is left
/// out; it says nothing to a user).
pub fn describe_key(endpoint: &str) -> String {
    match endpoint
        .strip_prefix(APP_KEY_PREFIX)
        .and_then(|rest| rest.split_once(':'))
    {
        Some((_, name)) => format!("{name} (the budget every account of the app shares)"),
        None => endpoint.to_owned(),
    }
}

/// Shared rate-limit state for one account on one platform (ARCHITECTURE invariant 6). The
/// adapter asks before every call and reports the platform's headers after it. An endpoint made
/// with [`app_key`] is the application's budget, shared with every other account of the app;
/// any other endpoint is this account's.
#[async_trait::async_trait]
pub trait RateLimitGate: Send + Sync {
    /// `Err(until)` when the endpoint's budget is exhausted until `until`: do not call.
    async fn acquire(&self, endpoint: &str) -> Result<(), DateTime<Utc>>;
    /// What the platform said about the endpoint's budget in its response headers.
    async fn observe(
        &self,
        endpoint: &str,
        remaining: Option<u64>,
        reset_at: Option<DateTime<Utc>>,
    );

    /// How many calls the endpoint's window allows, where the platform says (X's
    /// `x-rate-limit-limit`): once a window has reset, no more than that many calls go out
    /// before the platform has answered one of them. The default keeps nothing.
    async fn observe_limit(&self, _endpoint: &str, _limit: u64) {}

    /// Takes `units` from a daily quota that every account and worker of `scope` shares (a
    /// Google project's YouTube quota), for platforms that count quota instead of reporting
    /// it. A day the store has not seen starts with `budget` units and ends at `resets_at`.
    /// `Err(until)` when the units do not fit today. The default counts nothing.
    async fn take_quota(
        &self,
        _scope: &str,
        _units: u64,
        _budget: u64,
        _resets_at: DateTime<Utc>,
    ) -> Result<(), DateTime<Utc>> {
        Ok(())
    }

    /// The platform refused a call because `scope`'s quota is used up until `until`.
    async fn quota_exhausted(&self, _scope: &str, _until: DateTime<Utc>) {}

    /// Takes one call from a budget the platform documents but never reports (TikTok: 6 init
    /// calls per minute): at most `limit` calls in any `window`, counted across every worker.
    /// `Err(until)` when the budget is used up until `until`. Gates that keep no shared state
    /// only apply `acquire`.
    async fn acquire_documented(
        &self,
        endpoint: &str,
        _limit: u32,
        _window: std::time::Duration,
    ) -> Result<(), DateTime<Utc>> {
        self.acquire(endpoint).await
    }

    /// Reserves one publish from the rolling quota `scope` (posts per 24 hours), given what the
    /// platform reported just now. The used count is the platform's figure plus Herald's own
    /// publishes the reading may not include (reserved and not ended before `read_at`, or whose
    /// outcome is unknown), taken atomically across every worker, so two workers never both
    /// take the last slot. Gates that keep no shared state judge by the reading alone.
    async fn reserve_publish(
        &self,
        _scope: &str,
        reading: QuotaReading,
    ) -> Result<PublishReservation, QuotaFull> {
        reading.judge_alone()
    }

    /// Records what became of a reserved publish (see [`PublishSettled`]).
    async fn settle_publish(
        &self,
        _scope: &str,
        _reservation: &PublishReservation,
        _outcome: PublishSettled,
    ) {
    }
}

/// What the platform said about a rolling publishing quota (posts per 24 hours: Instagram's
/// `content_publishing_limit`, Threads' `threads_publishing_limit`) just now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaReading {
    /// Posts the platform counts in the window: Herald's and those made elsewhere.
    pub used: u64,
    /// Posts allowed in the window.
    pub total: u64,
    /// The window.
    pub window: std::time::Duration,
    /// When the platform was asked (taken before the request): Herald's publishes that ended
    /// before this are in `used`, later ones may not be.
    pub read_at: DateTime<Utc>,
}

impl QuotaReading {
    /// The decision the reading alone allows, for gates that keep no shared state.
    pub fn judge_alone(&self) -> Result<PublishReservation, QuotaFull> {
        if self.used < self.total {
            Ok(PublishReservation {
                id: String::new(),
                left: self.total - self.used - 1,
            })
        } else {
            Err(QuotaFull {
                in_flight: 0,
                frees_at: None,
            })
        }
    }
}

/// One publish taken from a rolling quota; settle it with [`RateLimitGate::settle_publish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishReservation {
    /// The gate's handle; empty when the gate keeps no shared state.
    pub id: String,
    /// Slots left after this one, counting Herald's publishes the platform may not show yet.
    pub left: u64,
}

/// No publish fits in the quota now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaFull {
    /// Herald's own publishes counted on top of the platform's figure (in flight, or whose
    /// outcome is unknown).
    pub in_flight: u64,
    /// When the first of those leaves the window, if any.
    pub frees_at: Option<DateTime<Utc>>,
}

/// What became of a reserved publish whose outcome is known. A publish whose outcome is
/// unknown is never settled: the post may exist, so its reservation stays counted until it
/// leaves the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishSettled {
    /// The platform answered with the post: its own count includes it from now on.
    Published,
    /// The platform refused: no post, the slot is free again.
    NotPublished,
}

/// A gate that never blocks; for connect-time calls made before an account is known.
pub struct Unlimited;

#[async_trait::async_trait]
impl RateLimitGate for Unlimited {
    async fn acquire(&self, _endpoint: &str) -> Result<(), DateTime<Utc>> {
        Ok(())
    }
    async fn observe(&self, _: &str, _: Option<u64>, _: Option<DateTime<Utc>>) {}
}

/// Receives upload progress so the publisher can record `UploadStarted`,
/// `UploadSessionOpened` and `UploadChunked`.
#[async_trait::async_trait]
pub trait UploadProgress: Send + Sync {
    async fn started(&self, total_bytes: u64);
    /// A resumable session exists; call before sending its first byte, so an attempt that
    /// dies mid-upload can be resumed. The handle is sealed before it is stored.
    async fn session_opened(&self, session: &Secret);
    /// The platform confirmed `bytes_sent` bytes.
    async fn chunk_sent(&self, bytes_sent: u64, total_bytes: u64);
}

/// The calls Herald makes to a platform. Implementations classify every failure
/// (`PlatformFailure::class`) and never put a token into an error message.
#[async_trait::async_trait]
pub trait PlatformAdapter: Send + Sync {
    fn platform(&self) -> Platform;

    /// The URL to send the user to, with a fresh `state` and PKCE challenge.
    fn authorization_url(&self, redirect_uri: &str) -> AuthorizationStart;

    /// Exchanges the callback's code for tokens.
    async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &Secret,
        redirect_uri: &str,
    ) -> Result<TokenGrant, PlatformFailure>;

    /// Exchanges `account`'s refresh token for new tokens. A refused grant is classified
    /// `ReauthorizationRequired`.
    async fn refresh(
        &self,
        account: &AccountProfile,
        refresh_token: &Secret,
    ) -> Result<TokenGrant, PlatformFailure>;

    /// Revokes `account`'s grant at the platform, where the platform offers it. The caller
    /// only asks when no other connection still uses the grant.
    async fn revoke(
        &self,
        account: &AccountProfile,
        grant: &TokenGrant,
    ) -> Result<(), PlatformFailure>;

    /// A grant as the vault holds it, in the form the adapter works with today: entries an
    /// older Herald wrote in another form are read here, and stored in the current form at
    /// their next refresh. Most adapters never changed their form.
    fn current_form(&self, stored: TokenGrant) -> TokenGrant {
        stored
    }

    /// The account the token belongs to.
    async fn account(&self, access_token: &Secret) -> Result<AccountProfile, PlatformFailure>;

    /// Every account this login may publish as: one connection each. Most platforms have one;
    /// a Facebook login has its Pages, a LinkedIn member the organisations they post for.
    async fn accounts(&self, grant: &TokenGrant) -> Result<Vec<ConnectedAccount>, PlatformFailure> {
        Ok(vec![ConnectedAccount {
            profile: self.account(&grant.access_token).await?,
            grant: None,
        }])
    }

    /// Streams one media item from its URL to the platform (resuming `upload.resume` where
    /// given); returns the platform's media id once the platform has finished processing it.
    async fn upload_media(
        &self,
        access_token: &Secret,
        upload: &MediaUpload<'_>,
        limits: &dyn RateLimitGate,
        progress: &dyn UploadProgress,
    ) -> Result<String, PlatformFailure>;

    /// Creates one post. This is the irreversible call.
    async fn create_post(
        &self,
        access_token: &Secret,
        draft: &PostDraft,
        limits: &dyn RateLimitGate,
    ) -> Result<CreatedPost, PostError>;

    /// Looks for a post `draft.account` created at or after `since` matching `draft` — used to
    /// reconcile an attempt whose outcome is unknown.
    async fn find_post(
        &self,
        access_token: &Secret,
        since: DateTime<Utc>,
        draft: &PostDraft,
        limits: &dyn RateLimitGate,
    ) -> Result<Option<CreatedPost>, PlatformFailure>;

    /// Reads a webhook delivery: checks its signature against the app's secret, then says what
    /// it means for Herald. `headers` are keyed by lower-case name.
    fn read_webhook(
        &self,
        _headers: &HashMap<String, String>,
        _body: &[u8],
        _now: DateTime<Utc>,
    ) -> Result<WebhookNotice, WebhookRefusal> {
        Err(WebhookRefusal::NotSupported)
    }
}

/// What a platform told Herald through a webhook whose signature checked out.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookNotice {
    /// The account removed Herald's access; `why` in words, `at` when it happened.
    AccessRemoved {
        account_id: String,
        why: String,
        at: DateTime<Utc>,
    },
    /// A person removed Herald from a login that several accounts share (Facebook: their Pages
    /// and Instagram accounts); `login_id` as in `TokenGrant::login_id`.
    LoginRemoved {
        login_id: String,
        why: String,
        at: DateTime<Utc>,
    },
    /// An event Herald does not act on (publishing outcomes are polled), named for the log.
    NotActedOn { event: String },
}

/// Why a webhook delivery was refused. Nothing is changed for a refused delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookRefusal {
    #[error("this platform's webhooks are not received by Herald")]
    NotSupported,
    /// Missing, malformed, stale or wrong: the delivery may be forged or replayed.
    #[error("the delivery's signature does not hold: {0}")]
    BadSignature(String),
    #[error("the delivery cannot be read: {0}")]
    Unreadable(String),
}

/// The adapter for each platform Herald is configured for.
#[derive(Clone, Default)]
pub struct Adapters {
    by_platform: std::collections::HashMap<Platform, std::sync::Arc<dyn PlatformAdapter>>,
}

impl Adapters {
    pub fn with(mut self, adapter: std::sync::Arc<dyn PlatformAdapter>) -> Self {
        self.by_platform.insert(adapter.platform(), adapter);
        self
    }

    /// The platform's adapter, or a permanent failure saying it is not configured.
    pub fn get(
        &self,
        platform: Platform,
    ) -> Result<std::sync::Arc<dyn PlatformAdapter>, PlatformFailure> {
        self.by_platform.get(&platform).cloned().ok_or_else(|| {
            PlatformFailure::new(
                herald_domain::ErrorClass::Permanent,
                "platform_not_configured",
                format!("{platform} is not configured on this Herald server"),
            )
        })
    }
}
