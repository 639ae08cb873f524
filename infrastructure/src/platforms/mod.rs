//! Platform adapters: one module per platform, all behind `PlatformAdapter`. Every base URL and
//! OAuth endpoint comes from configuration, so an adapter talks to the real platform, to the
//! sandbox, or to any standards-compliant OAuth server.
use chrono::{DateTime, Utc};
use herald_domain::connection::AccountProfile;
use herald_domain::{MediaItem, Platform, PlatformFailure, Poll};

use crate::secret::Secret;

pub mod threads;
pub mod x;

/// Tokens a platform granted. Goes straight into the vault; never into an event or a log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenGrant {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Vec<String>,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostDraft {
    pub text: String,
    pub media_ids: Vec<String>,
    pub poll: Option<Poll>,
    pub reply_to: Option<String>,
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

/// Shared rate-limit state for one account on one platform (ARCHITECTURE invariant 6). The
/// adapter asks before every call and reports the platform's headers after it.
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

/// Receives upload progress so the publisher can record `UploadStarted` / `UploadChunked`.
#[async_trait::async_trait]
pub trait UploadProgress: Send + Sync {
    async fn started(&self, total_bytes: u64);
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

    /// Exchanges a refresh token for new tokens. A refused grant is classified
    /// `ReauthorizationRequired`.
    async fn refresh(&self, refresh_token: &Secret) -> Result<TokenGrant, PlatformFailure>;

    /// Revokes the grant at the platform, where the platform offers it.
    async fn revoke(&self, grant: &TokenGrant) -> Result<(), PlatformFailure>;

    /// The account the token belongs to.
    async fn account(&self, access_token: &Secret) -> Result<AccountProfile, PlatformFailure>;

    /// Streams one media item from its URL to the platform; returns the platform's media id once
    /// the platform has finished processing it.
    async fn upload_media(
        &self,
        access_token: &Secret,
        item: &MediaItem,
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

    /// Looks for a post this account created at or after `since` matching `draft` — used to
    /// reconcile an attempt whose outcome is unknown.
    async fn find_post(
        &self,
        access_token: &Secret,
        account_id: &str,
        since: DateTime<Utc>,
        draft: &PostDraft,
        limits: &dyn RateLimitGate,
    ) -> Result<Option<CreatedPost>, PlatformFailure>;
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
