//! TikTok adapter (platform-facts §2): Login Kit OAuth v2 and the Content Posting API.
//!
//! OAuth: `client_key` (not `client_id`) in the authorize URL and the token form, scopes
//! comma-separated, `state` always, PKCE off by default (the web flow takes none). Token
//! responses carry `open_id`, `expires_in` and `refresh_expires_in`; lifetimes are read from
//! every response (the docs disagree: 24 h or 2 h), and refresh tokens rotate, so the newest
//! one is always kept. Token errors are flat (`{error, error_description, log_id}`), API errors
//! the envelope `{"data", "error": {"code", "message", "log_id"}}`.
//!
//! Publishing happens in `upload_media` (see [`publish`]), because on TikTok the upload *is*
//! the post: once the last chunk is in (or TikTok pulled the media), TikTok publishes on its
//! own. `upload_media` reads `creator_info`, calls the init endpoint, reports the publish id and
//! upload URL through `UploadProgress::session_opened` before the first byte, uploads the
//! chunks and waits until TikTok reports the outcome; `create_post` only turns that outcome into
//! a post id and link, and `find_post` asks TikTok about a recorded publish id (or, for a pulled
//! public video without one, looks among the account's public videos).
//!
//! Rate-limit keys (per account, shared by every worker): `tiktok_creator_info` (20/min),
//! `tiktok_video_init`, `tiktok_inbox_video_init`, `tiktok_content_init` (6/min each),
//! `tiktok_status` (30/min), `tiktok_video_list` (600/min), `tiktok_inbox_share` (5 per 24 h,
//! counted to explain refusals), `tiktok_user_info`.
mod config;
mod errors;
mod publish;
mod settings;
mod video_list;
mod webhook;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use herald_domain::connection::AccountProfile;
use herald_domain::{ErrorClass, Platform, PlatformFailure};
use rand::distributions::{Alphanumeric, DistString};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::{Digest, Sha256};

pub use config::{PkceEncoding, TiktokConfig, TiktokLimits, DEFAULT_SCOPES, MB, VIDEO_LIST_SCOPE};
pub use settings::{TiktokSettings, ENTRY};

use self::errors::{classify, classify_code, ApiError, CallContext, Envelope};
use super::http::{self, PlatformApi};
use super::{
    AuthorizationStart, ConnectedAccount, CreatedPost, MediaUpload, PlatformAdapter, PostDraft,
    PostError, RateLimitGate, TokenGrant, Unlimited, UploadProgress,
};
use crate::media_source::MediaSource;
use crate::oauth::{classify_token_error, redact, SetupError, TokenCall};
use crate::secret::Secret;

/// The TikTok adapter. Cheap to share: hold it in an `Arc`.
pub struct TiktokAdapter {
    config: TiktokConfig,
    /// API calls; redirects are never followed (they would carry the token elsewhere).
    api: reqwest::Client,
    /// Chunk `PUT`s: a longer timeout, no redirects.
    upload: reqwest::Client,
    /// Downloads media from its URL under the SSRF policy, with a read timeout.
    media_source: MediaSource,
}

impl std::fmt::Debug for TiktokAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TiktokAdapter")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A successful token response (platform-facts §2.1).
#[derive(Debug, Deserialize)]
struct TokenBody {
    access_token: String,
    expires_in: Option<i64>,
    open_id: Option<String>,
    refresh_expires_in: Option<i64>,
    refresh_token: Option<String>,
    scope: Option<String>,
}

#[derive(Debug, Deserialize)]
struct UserData {
    user: User,
}

#[derive(Debug, Deserialize)]
struct User {
    open_id: String,
    display_name: Option<String>,
    username: Option<String>,
}

impl TiktokAdapter {
    /// An adapter for the TikTok API (or sandbox) described by `config`.
    pub fn new(config: TiktokConfig) -> Result<Self, SetupError> {
        let connect_timeout = config.request_timeout.min(Duration::from_secs(10));
        let api = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.request_timeout)
            .connect_timeout(connect_timeout)
            .build()?;
        let upload = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.upload_timeout)
            .connect_timeout(connect_timeout)
            .build()?;
        let media_source = MediaSource::new(config.media_policy.clone(), config.request_timeout)?;
        Ok(Self {
            config,
            api,
            upload,
            media_source,
        })
    }

    /// The configuration the adapter was built with.
    pub fn config(&self) -> &TiktokConfig {
        &self.config
    }

    /// Sends an API call through the shared gate and returns the envelope's `data`; an error
    /// code other than `ok` is classified, whatever the HTTP status.
    async fn call_data<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        limits: &dyn RateLimitGate,
        request: reqwest::RequestBuilder,
        ctx: CallContext,
    ) -> Result<T, PlatformFailure> {
        let reply = http::call(self, endpoint, limits, request, ctx).await?;
        let envelope: Envelope<serde_json::Value> = reply.json(self, ctx)?;
        if !envelope.error.code.is_empty() && envelope.error.code != "ok" {
            return Err(classify_code(
                reply.status.as_u16(),
                &envelope.error,
                ctx,
                Utc::now(),
            ));
        }
        let data = envelope.data.unwrap_or(serde_json::Value::Null);
        serde_json::from_value(data).map_err(|_| http::unreadable(self, ctx, reply.status))
    }

    /// Waits for a slot of a documented per-token limit (at most `max_limit_wait`); a longer
    /// wait ends the attempt as rate-limited.
    async fn take_slot(
        &self,
        endpoint: &str,
        limit: u32,
        limits: &dyn RateLimitGate,
    ) -> Result<(), PlatformFailure> {
        let window = self.config.limits.window + self.config.limits.margin;
        let deadline =
            Utc::now() + TimeDelta::from_std(self.config.max_limit_wait).unwrap_or_default();
        loop {
            match limits.acquire_documented(endpoint, limit, window).await {
                Ok(()) => return Ok(()),
                Err(until) if until <= deadline => {
                    tracing::debug!(endpoint, %until, "waiting for a TikTok rate-limit slot");
                    let wait = (until - Utc::now()).to_std().unwrap_or_default();
                    tokio::time::sleep(wait + Duration::from_millis(20)).await;
                }
                Err(until) => return Err(http::local_limit("TikTok", endpoint, until)),
            }
        }
    }

    /// A token call (`/v2/oauth/token/` or `/v2/oauth/revoke/`): the flat error shape may come
    /// with any status, even 200.
    async fn token_call(
        &self,
        path: &str,
        form: &[(&str, &str)],
        call: TokenCall,
        secrets: &[&str],
    ) -> Result<bytes::Bytes, PlatformFailure> {
        let action = match call {
            TokenCall::Code => "exchange the authorization code",
            TokenCall::Refresh => "refresh the access token",
            TokenCall::Revoke => "revoke the access",
        };
        let response = self
            .api
            .post(self.config.api_url(path))
            .form(form)
            .send()
            .await
            .map_err(|e| http::default_transport_failure("TikTok", action, &e))?;
        let status = response.status().as_u16();
        let retry_at = http::retry_after(response.headers(), Utc::now());
        let body = response
            .bytes()
            .await
            .map_err(|e| http::default_transport_failure("TikTok", action, &e))?;
        let has_error = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str().map(str::to_owned)))
            .is_some_and(|e| !e.is_empty());
        if (200..300).contains(&status) && !has_error {
            return Ok(body);
        }
        // A flat error with 200 reads like a 400 (the request was refused).
        let status = if status < 300 { 400 } else { status };
        let failure = classify_token_error("TikTok", call, status, retry_at, &body);
        Err(PlatformFailure {
            message: redact(&failure.message, secrets),
            ..failure
        })
    }

    /// The grant in a token response; without a new refresh token the old one stays.
    fn grant(
        &self,
        body: &[u8],
        previous_refresh: Option<&Secret>,
    ) -> Result<TokenGrant, PlatformFailure> {
        let parsed: TokenBody = serde_json::from_slice(body).map_err(|_| {
            PlatformFailure::new(
                ErrorClass::Permanent,
                "oauth_unexpected_response",
                "TikTok's token endpoint answered with a response Herald cannot read; check that TIKTOK_API_BASE points at TikTok's API",
            )
        })?;
        let now = Utc::now();
        let expires_at = parsed
            .expires_in
            .filter(|s| *s > 0)
            .map(|s| now + TimeDelta::seconds(s));
        tracing::debug!(
            open_id = parsed.open_id.as_deref().unwrap_or_default(),
            expires_in = parsed.expires_in,
            refresh_expires_in = parsed.refresh_expires_in,
            "TikTok issued tokens"
        );
        let scopes = match parsed.scope.as_deref() {
            Some(granted) if !granted.trim().is_empty() => granted
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => self.config.scopes.clone(),
        };
        Ok(TokenGrant {
            access_token: Secret::new(parsed.access_token),
            refresh_token: parsed
                .refresh_token
                .filter(|t| !t.is_empty())
                .map(Secret::new)
                .or_else(|| previous_refresh.cloned()),
            expires_at,
            scopes,
            refresh_token_expires_at: None,
            login_id: None,
        })
    }

    /// `GET /v2/user/info/` with `fields`.
    async fn user_info(
        &self,
        access_token: &Secret,
        fields: &str,
        limits: &dyn RateLimitGate,
    ) -> Result<User, PlatformFailure> {
        let mut url = self.config.api_url("v2/user/info/");
        url.query_pairs_mut().append_pair("fields", fields);
        let request = self.api.get(url).bearer_auth(access_token.expose());
        let data: UserData = self
            .call_data("tiktok_user_info", limits, request, CallContext::USER_INFO)
            .await?;
        Ok(data.user)
    }

    /// The profile, asking for the username only where `user.info.profile` was granted;
    /// otherwise the creator's username from `creator_info` (with `video.publish`), or the
    /// display name.
    async fn profile(
        &self,
        access_token: &Secret,
        scopes: &[String],
    ) -> Result<AccountProfile, PlatformFailure> {
        let granted = |s: &str| scopes.iter().any(|g| g == s);
        let with_username = granted("user.info.profile");
        let fields = if with_username {
            "open_id,union_id,avatar_url,display_name,username"
        } else {
            "open_id,union_id,avatar_url,display_name"
        };
        let user = self.user_info(access_token, fields, &Unlimited).await?;
        let display_name = user.display_name.clone().unwrap_or_default();
        let mut username = user.username.filter(|u| !u.is_empty());
        if username.is_none() && granted("video.publish") {
            username = self
                .creator_info(access_token, &Unlimited)
                .await
                .ok()
                .map(|c| c.creator_username)
                .filter(|u| !u.is_empty());
        }
        Ok(AccountProfile {
            account_id: user.open_id,
            username: username.unwrap_or_else(|| display_name.clone()),
            display_name,
        })
    }
}

impl PlatformApi for TiktokAdapter {
    type Context = CallContext;

    fn name(&self) -> &'static str {
        "TikTok"
    }

    fn action(&self, ctx: CallContext) -> &'static str {
        ctx.action
    }

    /// TikTok reports no budget; a 429 closes the endpoint for its one-minute window.
    fn rate_limit(
        &self,
        status: reqwest::StatusCode,
        _headers: &reqwest::header::HeaderMap,
        now: DateTime<Utc>,
    ) -> (Option<u64>, Option<DateTime<Utc>>) {
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return (Some(0), Some(now + TimeDelta::seconds(60)));
        }
        (None, None)
    }

    fn classify(
        &self,
        status: reqwest::StatusCode,
        _headers: &reqwest::header::HeaderMap,
        body: &[u8],
        ctx: CallContext,
        now: DateTime<Utc>,
    ) -> PlatformFailure {
        classify(status.as_u16(), body, ctx, now)
    }

    fn is_error_body(&self, body: &serde_json::Value) -> bool {
        body.pointer("/error/code")
            .and_then(|c| c.as_str())
            .is_some_and(|c| c != "ok")
    }
}

/// A PKCE verifier (RFC 7636: 43–128 unreserved characters) and its challenge.
fn pkce_pair(encoding: PkceEncoding) -> (String, String) {
    let verifier = Alphanumeric.sample_string(&mut rand::thread_rng(), 64);
    let digest = Sha256::digest(verifier.as_bytes());
    let challenge = match encoding {
        PkceEncoding::Base64Url => {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
        }
        PkceEncoding::Hex => digest.iter().map(|b| format!("{b:02x}")).collect(),
    };
    (verifier, challenge)
}

#[async_trait::async_trait]
impl PlatformAdapter for TiktokAdapter {
    fn platform(&self) -> Platform {
        Platform::Tiktok
    }

    /// `https://www.tiktok.com/v2/auth/authorize/?client_key=&scope=a,b&response_type=code&redirect_uri=&state=`.
    fn authorization_url(&self, redirect_uri: &str) -> AuthorizationStart {
        let state = Alphanumeric.sample_string(&mut rand::thread_rng(), 32);
        let mut url = self.config.authorize_url.clone();
        let mut verifier = String::new();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_key", &self.config.client_key)
                .append_pair("scope", &self.config.scopes.join(","))
                .append_pair("response_type", "code")
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("state", &state);
            if let Some(encoding) = self.config.pkce {
                let (v, challenge) = pkce_pair(encoding);
                verifier = v;
                q.append_pair("code_challenge", &challenge)
                    .append_pair("code_challenge_method", "S256");
            }
        }
        AuthorizationStart {
            url,
            state,
            pkce_verifier: Secret::new(verifier),
        }
    }

    #[tracing::instrument(skip_all, fields(platform = "tiktok"))]
    async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &Secret,
        redirect_uri: &str,
    ) -> Result<TokenGrant, PlatformFailure> {
        let mut form = vec![
            ("client_key", self.config.client_key.as_str()),
            ("client_secret", self.config.client_secret.expose()),
            ("code", code),
            ("grant_type", "authorization_code"),
            ("redirect_uri", redirect_uri),
        ];
        if self.config.pkce.is_some() && !pkce_verifier.expose().is_empty() {
            form.push(("code_verifier", pkce_verifier.expose()));
        }
        let secrets = [
            code,
            pkce_verifier.expose(),
            self.config.client_secret.expose(),
        ];
        let body = self
            .token_call("v2/oauth/token/", &form, TokenCall::Code, &secrets)
            .await?;
        self.grant(&body, None)
    }

    /// Refresh tokens rotate: the response's refresh token replaces the one sent.
    #[tracing::instrument(skip_all, fields(platform = "tiktok"))]
    async fn refresh(
        &self,
        _account: &AccountProfile,
        refresh_token: &Secret,
    ) -> Result<TokenGrant, PlatformFailure> {
        let form = [
            ("client_key", self.config.client_key.as_str()),
            ("client_secret", self.config.client_secret.expose()),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ];
        let secrets = [refresh_token.expose(), self.config.client_secret.expose()];
        let body = self
            .token_call("v2/oauth/token/", &form, TokenCall::Refresh, &secrets)
            .await?;
        self.grant(&body, Some(refresh_token))
    }

    /// `POST /v2/oauth/revoke/` with the access token: the whole authorization ends.
    #[tracing::instrument(skip_all, fields(platform = "tiktok"))]
    async fn revoke(
        &self,
        _account: &AccountProfile,
        grant: &TokenGrant,
    ) -> Result<(), PlatformFailure> {
        let form = [
            ("client_key", self.config.client_key.as_str()),
            ("client_secret", self.config.client_secret.expose()),
            ("token", grant.access_token.expose()),
        ];
        let secrets = [
            grant.access_token.expose(),
            self.config.client_secret.expose(),
        ];
        self.token_call("v2/oauth/revoke/", &form, TokenCall::Revoke, &secrets)
            .await
            .map(|_| ())
    }

    #[tracing::instrument(skip_all, fields(platform = "tiktok"))]
    async fn account(&self, access_token: &Secret) -> Result<AccountProfile, PlatformFailure> {
        self.profile(access_token, &self.config.scopes).await
    }

    #[tracing::instrument(skip_all, fields(platform = "tiktok"))]
    async fn accounts(&self, grant: &TokenGrant) -> Result<Vec<ConnectedAccount>, PlatformFailure> {
        Ok(vec![ConnectedAccount {
            profile: self.profile(&grant.access_token, &grant.scopes).await?,
            grant: None,
        }])
    }

    #[tracing::instrument(skip_all, fields(platform = "tiktok", index = upload.index))]
    async fn upload_media(
        &self,
        access_token: &Secret,
        upload: &MediaUpload<'_>,
        limits: &dyn RateLimitGate,
        progress: &dyn UploadProgress,
    ) -> Result<String, PlatformFailure> {
        publish::upload_media(self, access_token, upload, limits, progress).await
    }

    #[tracing::instrument(skip_all, fields(platform = "tiktok"))]
    async fn create_post(
        &self,
        access_token: &Secret,
        draft: &PostDraft,
        limits: &dyn RateLimitGate,
    ) -> Result<CreatedPost, PostError> {
        publish::create_post(self, access_token, draft, limits).await
    }

    #[tracing::instrument(skip_all, fields(platform = "tiktok"))]
    async fn find_post(
        &self,
        access_token: &Secret,
        since: DateTime<Utc>,
        draft: &PostDraft,
        limits: &dyn RateLimitGate,
    ) -> Result<Option<CreatedPost>, PlatformFailure> {
        publish::find_post(self, access_token, since, draft, limits).await
    }

    fn read_webhook(
        &self,
        headers: &std::collections::HashMap<String, String>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<super::WebhookNotice, super::WebhookRefusal> {
        webhook::read(
            &self.config.client_key,
            self.config.client_secret.expose(),
            headers.get("tiktok-signature").map(String::as_str),
            body,
            now,
        )
    }
}

/// The error of a response body, for callers that read one by hand.
pub(crate) fn api_error(body: &[u8]) -> ApiError {
    ApiError::parse(body)
}
