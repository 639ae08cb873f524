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

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use herald_domain::connection::AccountProfile;
use herald_domain::{ErrorClass, MediaItem, Platform, PlatformFailure};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Deserialize;

pub(crate) use config::join;
pub use config::{XConfig, DEFAULT_SCOPES};

use self::errors::{classify, rate_limit_headers, transport_failure, CallContext};
use super::{
    AuthorizationStart, CreatedPost, PlatformAdapter, PostDraft, PostError, RateLimitGate,
    TokenGrant, Unlimited, UploadProgress,
};
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
    media_source: reqwest::Client,
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
        let media_source = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(5))
            .connect_timeout(connect_timeout)
            .read_timeout(config.request_timeout)
            .build()?;
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

    /// Asks the gate, sends, and reports X's rate-limit headers.
    async fn send(
        &self,
        endpoint: &str,
        limits: &dyn RateLimitGate,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, SendError> {
        limits
            .acquire(endpoint)
            .await
            .map_err(|until| SendError::Limited(local_limit(endpoint, until)))?;
        let response = request.send().await.map_err(SendError::Transport)?;
        let (mut remaining, mut reset) = rate_limit_headers(response.headers());
        if response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
            // A 429 closes the endpoint for every worker until X allows calls again, even when
            // it only says so with Retry-After.
            if let Some(until) = errors::not_before(response.headers(), chrono::Utc::now()) {
                remaining = Some(0);
                reset = Some(until);
            }
        }
        limits.observe(endpoint, remaining, reset).await;
        Ok(response)
    }

    /// Sends and reads the whole response; any non-success status is classified.
    async fn call(
        &self,
        endpoint: &str,
        limits: &dyn RateLimitGate,
        request: reqwest::RequestBuilder,
        ctx: CallContext,
    ) -> Result<Reply, PlatformFailure> {
        let response = match self.send(endpoint, limits, request).await {
            Ok(response) => response,
            Err(SendError::Limited(failure)) => return Err(failure),
            Err(SendError::Transport(e)) => return Err(transport_failure(&e, ctx)),
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_failure(&e, ctx))?;
        if !status.is_success() {
            return Err(classify(status.as_u16(), &headers, &body, ctx, Utc::now()));
        }
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// `call`, then parse the JSON body.
    async fn call_json<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        limits: &dyn RateLimitGate,
        request: reqwest::RequestBuilder,
        ctx: CallContext,
    ) -> Result<T, PlatformFailure> {
        let reply = self.call(endpoint, limits, request, ctx).await?;
        reply.json(ctx)
    }
}

/// A successful response, fully read.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json<T: DeserializeOwned>(&self, ctx: CallContext) -> Result<T, PlatformFailure> {
        serde_json::from_slice(&self.body).map_err(|_| {
            // A success status with an error body (X's partial errors) is classified as such.
            if serde_json::from_slice::<serde_json::Value>(&self.body)
                .is_ok_and(|v| v.get("errors").is_some())
            {
                return classify(
                    self.status.as_u16(),
                    &self.headers,
                    &self.body,
                    ctx,
                    Utc::now(),
                );
            }
            PlatformFailure::new(
                ErrorClass::Permanent,
                "unexpected_response",
                format!(
                    "X answered the request to {} with HTTP {} and a body Herald cannot read; check the X API base URL",
                    ctx.action, self.status
                ),
            )
        })
    }
}

enum SendError {
    /// Herald's shared limiter refused; nothing was sent.
    Limited(PlatformFailure),
    Transport(reqwest::Error),
}

fn local_limit(endpoint: &str, until: DateTime<Utc>) -> PlatformFailure {
    PlatformFailure::new(
        ErrorClass::RateLimited,
        "rate_limit_exhausted",
        format!(
            "the X rate limit for {endpoint} is used up until {}; Herald waits before calling again",
            until.to_rfc3339()
        ),
    )
    .not_before(until)
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
    async fn refresh(&self, refresh_token: &Secret) -> Result<TokenGrant, PlatformFailure> {
        self.oauth.refresh(refresh_token).await
    }

    /// Revokes the refresh token (which ends the whole grant at X) and the access token.
    #[tracing::instrument(skip_all, fields(platform = "x"))]
    async fn revoke(&self, grant: &TokenGrant) -> Result<(), PlatformFailure> {
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
        let user: Envelope<UserData> = self
            .call_json("users_me", &Unlimited, request, CallContext::READ_ACCOUNT)
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
        fields(platform = "x", kind = ?item.kind, media_id = tracing::field::Empty)
    )]
    async fn upload_media(
        &self,
        access_token: &Secret,
        item: &MediaItem,
        limits: &dyn RateLimitGate,
        progress: &dyn UploadProgress,
    ) -> Result<String, PlatformFailure> {
        let media_id = media::upload(self, access_token, item, limits, progress).await?;
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
        account_id: &str,
        since: DateTime<Utc>,
        draft: &PostDraft,
        limits: &dyn RateLimitGate,
    ) -> Result<Option<CreatedPost>, PlatformFailure> {
        let found = posts::find(self, access_token, account_id, since, draft, limits).await?;
        tracing::Span::current().record("found", found.is_some());
        Ok(found)
    }
}
