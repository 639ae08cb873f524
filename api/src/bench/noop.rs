//! The `--task noop` of `herald bench peer`: an X adapter that posts nothing. Herald still does
//! everything else it does for a job (claim, attempt recorded, token read from the vault, the
//! shared rate-limit gate, the outcome recorded, projections), so the run shows the ceiling of
//! Herald's own pipeline, as the harness's noop task shows a queue's.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use herald_domain::connection::AccountProfile;
use herald_domain::{ErrorClass, Platform, PlatformFailure};
use herald_infrastructure::platforms::http;
use herald_infrastructure::platforms::{
    AuthorizationStart, CreatedPost, MediaUpload, PlatformAdapter, PostDraft, PostError,
    RateLimitGate, TokenGrant, UploadProgress, WebhookNotice, WebhookRefusal,
};
use herald_infrastructure::secret::Secret;

/// The X adapter with its post creation replaced by an immediate answer; everything else
/// (OAuth, account) is the real adapter's, though the bench never calls it.
pub struct NoopPosts {
    inner: Arc<dyn PlatformAdapter>,
    created: Arc<AtomicU64>,
}

impl NoopPosts {
    /// Wraps `inner`; `created` counts the posts it pretended to create (the noop run's
    /// `posts`, to find duplicates).
    pub fn new(inner: Arc<dyn PlatformAdapter>, created: Arc<AtomicU64>) -> Self {
        Self { inner, created }
    }
}

#[async_trait::async_trait]
impl PlatformAdapter for NoopPosts {
    fn platform(&self) -> Platform {
        self.inner.platform()
    }

    fn authorization_url(&self, redirect_uri: &str) -> AuthorizationStart {
        self.inner.authorization_url(redirect_uri)
    }

    async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &Secret,
        redirect_uri: &str,
    ) -> Result<TokenGrant, PlatformFailure> {
        self.inner
            .exchange_code(code, pkce_verifier, redirect_uri)
            .await
    }

    async fn refresh(
        &self,
        account: &AccountProfile,
        refresh_token: &Secret,
    ) -> Result<TokenGrant, PlatformFailure> {
        self.inner.refresh(account, refresh_token).await
    }

    async fn revoke(
        &self,
        account: &AccountProfile,
        grant: &TokenGrant,
    ) -> Result<(), PlatformFailure> {
        self.inner.revoke(account, grant).await
    }

    async fn account(&self, access_token: &Secret) -> Result<AccountProfile, PlatformFailure> {
        self.inner.account(access_token).await
    }

    async fn upload_media(
        &self,
        _access_token: &Secret,
        _upload: &MediaUpload<'_>,
        _limits: &dyn RateLimitGate,
        _progress: &dyn UploadProgress,
    ) -> Result<String, PlatformFailure> {
        Err(PlatformFailure::new(
            ErrorClass::Permanent,
            "noop_task",
            "the bench's noop task publishes text only",
        ))
    }

    /// Asks the shared rate-limit gate as the real adapter does before its call (that is
    /// Herald's work, not the platform's), then answers at once.
    async fn create_post(
        &self,
        _access_token: &Secret,
        _draft: &PostDraft,
        limits: &dyn RateLimitGate,
    ) -> Result<CreatedPost, PostError> {
        if let Err(until) = limits.acquire("create_tweet").await {
            return Err(PostError::Failed(http::local_limit(
                "X",
                "create_tweet",
                until,
            )));
        }
        let id = self.created.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(CreatedPost {
            post_id: format!("noop-{id}"),
            url: format!("https://x.invalid/i/web/status/noop-{id}"),
        })
    }

    /// Nothing is ever sent, so no outcome is ever unknown.
    async fn find_post(
        &self,
        _access_token: &Secret,
        _since: DateTime<Utc>,
        _draft: &PostDraft,
        _limits: &dyn RateLimitGate,
    ) -> Result<Option<CreatedPost>, PlatformFailure> {
        Ok(None)
    }

    fn read_webhook(
        &self,
        headers: &HashMap<String, String>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<WebhookNotice, WebhookRefusal> {
        self.inner.read_webhook(headers, body, now)
    }
}
