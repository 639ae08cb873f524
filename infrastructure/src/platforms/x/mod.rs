//! X (Twitter) API v2 adapter: OAuth 2.0 with PKCE, chunked media upload through the dedicated
//! v2 endpoints, posts (text, media, polls, replies), and reconciliation of posts whose outcome
//! is unknown (platform-facts.md §1).
//!
//! Every request asks the shared `RateLimitGate` first and reports X's `x-rate-limit-*`
//! headers after. Rate-limit keys: `media_initialize`, `media_append`, `media_finalize`,
//! `media_status`, `create_tweet`, `users_me`, `user_tweets`.
mod config;
mod errors;
mod media;
mod posts;
mod settings;

use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_domain::connection::AccountProfile;
use herald_domain::{Platform, PlatformFailure};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde::Deserialize;

pub(crate) use config::join;
pub use config::{XConfig, DEFAULT_SCOPES};
pub use settings::{XSettings, ENTRY};

use self::errors::{classify, rate_limit_headers, transport_failure, CallContext};
use super::http::{self, PlatformApi};
use super::{
    AuthorizationStart, CreatedPost, MediaUpload, PlatformAdapter, PostDraft, PostError,
    RateLimitGate, TokenGrant, Unlimited, UploadProgress,
};
use crate::media_source::MediaSource;
use crate::oauth::{ClientAuth, OAuthClient, OAuthEndpoints, SetupError, TokenKind};
use crate::secret::Secret;

/// The X adapter. Cheap to share: hold it in an `Arc`.
pub struct XAdapter {
    config: XConfig,
    oauth: OAuthClient,
    /// Calls to X: total timeout per request, redirects never followed (a redirect would
    /// carry the bearer token elsewhere).
    api: reqwest::Client,
    /// Downloads of media from user-supplied URLs: a large video streams for longer than one
    /// API request may take, so only connecting and each read are bounded.
    media_source: MediaSource,
}

impl std::fmt::Debug for XAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XAdapter")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl XAdapter {
    /// An adapter for the X API (or sandbox) described by `config`.
    pub fn new(config: XConfig) -> Result<Self, SetupError> {
        let oauth = OAuthClient::new(
            OAuthEndpoints {
                provider: "X".to_owned(),
                authorize_url: config.authorize_url.clone(),
                token_url: config.token_url.clone(),
                revoke_url: Some(config.revoke_url.clone()),
                client_id: config.client_id.clone(),
                client_secret: config.client_secret.clone(),
                scopes: config.scopes.clone(),
                use_pkce: true,
                // X: confidential clients authenticate with Basic; public ones send client_id.
                client_auth: if config.client_secret.is_some() {
                    ClientAuth::Basic
                } else {
                    ClientAuth::RequestBody
                },
            },
            config.request_timeout,
        )?;
        let connect_timeout = config.request_timeout.min(Duration::from_secs(10));
        let api = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.request_timeout)
            .connect_timeout(connect_timeout)
            .build()?;
        let media_source = MediaSource::new(config.media_policy.clone(), config.request_timeout)?;
        Ok(Self {
            config,
            oauth,
            api,
            media_source,
        })
    }

    /// The configuration the adapter was built with.
    pub fn config(&self) -> &XConfig {
        &self.config
    }
}

impl PlatformApi for XAdapter {
    type Context = CallContext;

    fn name(&self) -> &'static str {
        "X"
    }

    fn action(&self, ctx: CallContext) -> &'static str {
        ctx.action
    }

    fn rate_limit(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        now: DateTime<Utc>,
    ) -> (Option<u64>, Option<DateTime<Utc>>) {
        let (mut remaining, mut reset) = rate_limit_headers(headers);
        if status == StatusCode::TOO_MANY_REQUESTS {
            // A 429 closes the endpoint for every worker until X allows calls again, even when
            // it only says so with Retry-After.
            if let Some(until) = errors::not_before(headers, now) {
                remaining = Some(0);
                reset = Some(until);
            }
        }
        (remaining, reset)
    }

    /// `x-rate-limit-limit`: the window's size.
    fn window_limit(&self, headers: &HeaderMap) -> Option<u64> {
        headers
            .get("x-rate-limit-limit")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
    }

    fn classify(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        ctx: CallContext,
        now: DateTime<Utc>,
    ) -> PlatformFailure {
        classify(status.as_u16(), headers, body, ctx, now)
    }

    fn transport_failure(&self, error: &reqwest::Error, ctx: CallContext) -> PlatformFailure {
        transport_failure(error, ctx)
    }

    /// X's partial errors: a success status with an `errors` array.
    fn is_error_body(&self, body: &serde_json::Value) -> bool {
        body.get("errors").is_some()
    }
}

/// `{"data": ...}`.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    data: T,
}

/// `GET /2/users/me` data.
#[derive(Debug, Deserialize)]
struct UserData {
    id: String,
    username: String,
    name: String,
}

#[async_trait::async_trait]
impl PlatformAdapter for XAdapter {
    fn platform(&self) -> Platform {
        Platform::X
    }

    fn authorization_url(&self, redirect_uri: &str) -> AuthorizationStart {
        self.oauth.start(redirect_uri)
    }

    #[tracing::instrument(skip_all, fields(platform = "x"))]
    async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &Secret,
        redirect_uri: &str,
    ) -> Result<TokenGrant, PlatformFailure> {
        self.oauth
            .exchange_code(code, pkce_verifier, redirect_uri)
            .await
    }

    #[tracing::instrument(skip_all, fields(platform = "x"))]
    async fn refresh(
        &self,
        _account: &AccountProfile,
        refresh_token: &Secret,
    ) -> Result<TokenGrant, PlatformFailure> {
        self.oauth.refresh(refresh_token).await
    }

    /// Revokes the refresh token (which ends the whole grant at X) and the access token.
    #[tracing::instrument(skip_all, fields(platform = "x"))]
    async fn revoke(
        &self,
        _account: &AccountProfile,
        grant: &TokenGrant,
    ) -> Result<(), PlatformFailure> {
        if let Some(refresh) = &grant.refresh_token {
            self.oauth.revoke(refresh, TokenKind::Refresh).await?;
        }
        self.oauth
            .revoke(&grant.access_token, TokenKind::Access)
            .await
    }

    #[tracing::instrument(skip_all, fields(platform = "x", account_id = tracing::field::Empty))]
    async fn account(&self, access_token: &Secret) -> Result<AccountProfile, PlatformFailure> {
        let request = self
            .api
            .get(self.config.api_url("2/users/me"))
            .bearer_auth(access_token.expose());
        let user: Envelope<UserData> = http::call_json(
            self,
            "users_me",
            &Unlimited,
            request,
            CallContext::READ_ACCOUNT,
        )
        .await?;
        tracing::Span::current().record("account_id", user.data.id.as_str());
        Ok(AccountProfile {
            account_id: user.data.id,
            username: user.data.username,
            display_name: user.data.name,
        })
    }

    #[tracing::instrument(
        skip_all,
        fields(platform = "x", kind = ?upload.item.kind, media_id = tracing::field::Empty)
    )]
    async fn upload_media(
        &self,
        access_token: &Secret,
        upload: &MediaUpload<'_>,
        limits: &dyn RateLimitGate,
        progress: &dyn UploadProgress,
    ) -> Result<String, PlatformFailure> {
        let media_id = media::upload(self, access_token, upload.item, limits, progress).await?;
        tracing::Span::current().record("media_id", media_id.as_str());
        Ok(media_id)
    }

    #[tracing::instrument(
        skip_all,
        fields(
            platform = "x",
            media = draft.media_ids.len(),
            poll = draft.poll.is_some(),
            reply = draft.reply_to.is_some(),
            post_id = tracing::field::Empty,
        )
    )]
    async fn create_post(
        &self,
        access_token: &Secret,
        draft: &PostDraft,
        limits: &dyn RateLimitGate,
    ) -> Result<CreatedPost, PostError> {
        let post = posts::create(self, access_token, draft, limits).await?;
        tracing::Span::current().record("post_id", post.post_id.as_str());
        Ok(post)
    }

    #[tracing::instrument(skip_all, fields(platform = "x", %since, found = tracing::field::Empty))]
    async fn find_post(
        &self,
        access_token: &Secret,
        since: DateTime<Utc>,
        draft: &PostDraft,
        limits: &dyn RateLimitGate,
    ) -> Result<Option<CreatedPost>, PlatformFailure> {
        let account_id = draft.account.account_id.as_str();
        let found = posts::find(self, access_token, account_id, since, draft, limits).await?;
        tracing::Span::current().record("found", found.is_some());
        Ok(found)
    }
}
