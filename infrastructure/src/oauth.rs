//! A reusable OAuth 2.0 authorization-code client (RFC 6749 with PKCE, RFC 7636, and token
//! revocation, RFC 7009), built on the `oauth2` crate.
//!
//! `oauth2` builds the requests (client authentication, PKCE, form encoding) and parses
//! successful token responses. Error responses are intercepted by our own HTTP client so that
//! they can be classified from the HTTP status, `Retry-After` and the error body, which `oauth2`
//! would otherwise discard. No token or client secret ever appears in a returned message.
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use herald_domain::{ErrorClass, PlatformFailure};
use oauth2::basic::{BasicClient, BasicTokenResponse};
use oauth2::{
    AsyncHttpClient, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointNotSet, EndpointSet, HttpRequest, HttpResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RefreshToken, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use url::Url;

use crate::platforms::{AuthorizationStart, TokenGrant};
use crate::secret::Secret;
use crate::text::truncate;

/// How the client authenticates at the token and revocation endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `Authorization: Basic base64(client_id:client_secret)` (confidential clients).
    Basic,
    /// `client_id` (and `client_secret`, if any) in the form body.
    RequestBody,
}

/// Everything needed to talk to one OAuth 2.0 authorization server.
#[derive(Debug, Clone)]
pub struct OAuthEndpoints {
    /// Name of the platform, used in messages ("X refused the refresh token ...").
    pub provider: String,
    /// Where the user's browser is sent to approve access.
    pub authorize_url: Url,
    /// Where codes and refresh tokens are exchanged for tokens.
    pub token_url: Url,
    /// RFC 7009 revocation endpoint, where the platform offers one.
    pub revoke_url: Option<Url>,
    /// The app's client id at the platform.
    pub client_id: String,
    /// Set for a confidential client; public clients rely on PKCE alone.
    pub client_secret: Option<Secret>,
    /// Scopes requested at authorization.
    pub scopes: Vec<String>,
    /// Send a PKCE S256 challenge and verifier.
    pub use_pkce: bool,
    pub client_auth: ClientAuth,
}

/// Which kind of token is being revoked (sent as `token_type_hint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// An access token (`token_type_hint=access_token`).
    Access,
    /// A refresh token (`token_type_hint=refresh_token`); revoking one usually ends the grant.
    Refresh,
}

/// A client that cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("could not build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Which token-endpoint call failed; decides how an `invalid_grant` is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenCall {
    Code,
    Refresh,
    Revoke,
}

type ConfiguredClient =
    BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// An OAuth 2.0 authorization-code client for one authorization server.
pub struct OAuthClient {
    endpoints: OAuthEndpoints,
    oauth: ConfiguredClient,
    http: StatusAwareHttp,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `OAuthEndpoints`' Debug already redacts the secret; the oauth2 client adds nothing.
        f.debug_struct("OAuthClient")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl OAuthClient {
    /// A client whose HTTP requests time out after `timeout`. Redirects are never followed: a
    /// token endpoint that redirects could otherwise send codes and secrets elsewhere (SSRF).
    pub fn new(endpoints: OAuthEndpoints, timeout: Duration) -> Result<Self, SetupError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()?;
        let mut oauth = BasicClient::new(ClientId::new(endpoints.client_id.clone()))
            .set_auth_uri(AuthUrl::from_url(endpoints.authorize_url.clone()))
            .set_token_uri(TokenUrl::from_url(endpoints.token_url.clone()))
            .set_auth_type(match endpoints.client_auth {
                ClientAuth::Basic => AuthType::BasicAuth,
                ClientAuth::RequestBody => AuthType::RequestBody,
            });
        if let Some(secret) = &endpoints.client_secret {
            oauth = oauth.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
        }
        Ok(Self {
            endpoints,
            oauth,
            http: StatusAwareHttp { http },
        })
    }

    /// The same client sending `user_agent` with every token and revocation request (Reddit
    /// throttles generic agents and asks each app for a unique one).
    pub fn with_user_agent(
        mut self,
        user_agent: &str,
        timeout: Duration,
    ) -> Result<Self, SetupError> {
        self.http.http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(user_agent)
            .build()?;
        Ok(self)
    }

    /// The configuration this client was built from.
    pub fn endpoints(&self) -> &OAuthEndpoints {
        &self.endpoints
    }

    /// The authorization URL with a fresh random `state` and, if enabled, a PKCE S256
    /// challenge. Without PKCE the returned verifier is empty.
    pub fn start(&self, redirect_uri: &str) -> AuthorizationStart {
        let mut request = self
            .oauth
            .authorize_url(CsrfToken::new_random)
            .add_scopes(self.endpoints.scopes.iter().cloned().map(Scope::new))
            // Passed verbatim: the platform matches it exactly against the registered one.
            .add_extra_param("redirect_uri", redirect_uri);
        let mut verifier = Secret::new("");
        if self.endpoints.use_pkce {
            let (challenge, pkce_verifier) = PkceCodeChallenge::new_random_sha256();
            request = request.set_pkce_challenge(challenge);
            verifier = Secret::new(pkce_verifier.secret().clone());
        }
        let (url, state) = request.url();
        AuthorizationStart {
            url,
            state: state.secret().clone(),
            pkce_verifier: verifier,
        }
    }

    /// Exchanges an authorization code (and the PKCE verifier kept since `start`) for tokens.
    pub async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &Secret,
        redirect_uri: &str,
    ) -> Result<TokenGrant, PlatformFailure> {
        let redirect = RedirectUrl::new(redirect_uri.to_owned()).map_err(|_| {
            PlatformFailure::new(
                ErrorClass::Permanent,
                "invalid_redirect_uri",
                "the OAuth redirect URI is not an absolute URL: fix Herald's callback URL setting",
            )
        })?;
        let mut request = self
            .oauth
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_redirect_uri(Cow::Owned(redirect));
        if self.endpoints.use_pkce {
            request =
                request.set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.expose().to_owned()));
        }
        let result = request.request_async(&self.http).await;
        let secrets = [code, pkce_verifier.expose()];
        let response = result.map_err(|e| self.failure(TokenCall::Code, e, &secrets))?;
        Ok(grant_from(&response, &self.endpoints.scopes, None))
    }

    /// Exchanges a refresh token for new tokens. A refused refresh token is
    /// `ReauthorizationRequired`. When the server issues no new refresh token, the old one is
    /// kept (RFC 6749 §6).
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<TokenGrant, PlatformFailure> {
        let token = RefreshToken::new(refresh_token.expose().to_owned());
        let result = self
            .oauth
            .exchange_refresh_token(&token)
            .request_async(&self.http)
            .await;
        let response =
            result.map_err(|e| self.failure(TokenCall::Refresh, e, &[refresh_token.expose()]))?;
        Ok(grant_from(
            &response,
            &self.endpoints.scopes,
            Some(refresh_token),
        ))
    }

    /// Revokes `grant` where the platform has a revocation endpoint: its refresh token where it
    /// has one (which ends the whole grant), its access token otherwise.
    pub async fn revoke_grant(&self, grant: &TokenGrant) -> Result<(), PlatformFailure> {
        match &grant.refresh_token {
            Some(refresh) => self.revoke(refresh, TokenKind::Refresh).await,
            None => self.revoke(&grant.access_token, TokenKind::Access).await,
        }
    }

    /// Revokes `token` where the platform has a revocation endpoint; a no-op otherwise.
    ///
    /// Sent by hand rather than through `oauth2`, which refuses plain-http revocation URLs and
    /// so could not talk to the sandbox. The request is RFC 7009's: `token`, `token_type_hint`
    /// and the client's credentials; `client_id` is always in the body, as X documents.
    pub async fn revoke(&self, token: &Secret, kind: TokenKind) -> Result<(), PlatformFailure> {
        let Some(url) = &self.endpoints.revoke_url else {
            return Ok(());
        };
        let hint = match kind {
            TokenKind::Access => "access_token",
            TokenKind::Refresh => "refresh_token",
        };
        let client_id = self.endpoints.client_id.as_str();
        let mut form = vec![
            ("token", token.expose()),
            ("token_type_hint", hint),
            ("client_id", client_id),
        ];
        let mut request = self.http.http.post(url.clone());
        match (&self.endpoints.client_secret, self.endpoints.client_auth) {
            // RFC 6749 §2.3.1: both halves are form-encoded before base64.
            (Some(secret), ClientAuth::Basic) => {
                request =
                    request.basic_auth(form_encode(client_id), Some(form_encode(secret.expose())));
            }
            (Some(secret), ClientAuth::RequestBody) => {
                form.push(("client_secret", secret.expose()))
            }
            (None, _) => {}
        }
        let provider = self.endpoints.provider.as_str();
        let secrets = [token.expose()];
        let response = request
            .form(&form)
            .send()
            .await
            .map_err(|e| transport_failure(provider, &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_at = retry_after(response.headers(), Utc::now());
        let body = response.bytes().await.unwrap_or_default();
        let failure = classify_token_error(
            provider,
            TokenCall::Revoke,
            status.as_u16(),
            retry_at,
            &body,
        );
        Err(PlatformFailure {
            message: redact(&failure.message, &secrets),
            ..failure
        })
    }

    fn failure<T: oauth2::ErrorResponse + 'static>(
        &self,
        call: TokenCall,
        error: RequestTokenError<HttpError, T>,
        secrets: &[&str],
    ) -> PlatformFailure {
        let provider = self.endpoints.provider.as_str();
        let failure = match error {
            RequestTokenError::Request(HttpError::Status {
                status,
                retry_after,
                body,
            }) => classify_token_error(provider, call, status, retry_after, &body),
            RequestTokenError::Request(HttpError::Transport(e)) => transport_failure(provider, &e),
            // Our client turns every non-success status into `HttpError::Status`; this arm is
            // reached only by a server that answers 200 with an error body.
            RequestTokenError::ServerResponse(body) => {
                let body = serde_json::to_vec(&body).unwrap_or_default();
                classify_token_error(provider, call, 400, None, &body)
            }
            // The body of a 200 may hold tokens: never echo it.
            RequestTokenError::Parse(_, _) | RequestTokenError::Other(_) => PlatformFailure::new(
                ErrorClass::Permanent,
                "oauth_unexpected_response",
                format!(
                    "{provider}'s token endpoint answered with a response Herald cannot read; \
                     check that the token URL points at {provider}'s OAuth 2.0 token endpoint"
                ),
            ),
        };
        PlatformFailure {
            message: redact(&failure.message, secrets),
            ..failure
        }
    }
}

/// The grant in a successful token response. Scopes are the granted ones when the server says,
/// else the requested ones.
fn grant_from(
    response: &BasicTokenResponse,
    requested: &[String],
    previous_refresh: Option<&Secret>,
) -> TokenGrant {
    let expires_at = response.expires_in().and_then(|ttl| {
        TimeDelta::from_std(ttl)
            .ok()
            .and_then(|ttl| Utc::now().checked_add_signed(ttl))
    });
    let scopes = match response.scopes() {
        Some(granted) if !granted.is_empty() => granted.iter().map(|s| s.to_string()).collect(),
        _ => requested.to_vec(),
    };
    TokenGrant {
        access_token: Secret::new(response.access_token().secret().clone()),
        refresh_token: response
            .refresh_token()
            .map(|t| Secret::new(t.secret().clone()))
            .or_else(|| previous_refresh.cloned()),
        expires_at,
        scopes,
        refresh_token_expires_at: None,
        login_id: None,
    }
}

/// An OAuth error body (`{"error","error_description"}`); some servers send a problem body
/// (`{"title","detail"}`) instead.
#[derive(Debug, Default, serde::Deserialize)]
struct OAuthErrorBody {
    error: Option<String>,
    error_description: Option<String>,
    title: Option<String>,
    detail: Option<String>,
}

/// Classifies a token/revocation endpoint error from its status, `Retry-After` and body.
pub(crate) fn classify_token_error(
    provider: &str,
    call: TokenCall,
    status: u16,
    retry_after: Option<DateTime<Utc>>,
    body: &[u8],
) -> PlatformFailure {
    let parsed: OAuthErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let error = parsed.error.as_deref().unwrap_or("");
    let description = parsed
        .error_description
        .or(parsed.detail)
        .or(parsed.title)
        .map(|d| truncate(&d, 300))
        .unwrap_or_default();
    let code = if error.is_empty() {
        format!("http_{status}")
    } else {
        error.to_owned()
    };
    let said = if description.is_empty() {
        String::new()
    } else {
        format!(" ({description})")
    };

    if status == 429 {
        let failure = PlatformFailure::new(
            ErrorClass::RateLimited,
            code,
            format!(
                "{provider} is rate-limiting token requests{said}; Herald will try again later"
            ),
        );
        return match retry_after {
            Some(at) => failure.not_before(at),
            None => failure,
        };
    }
    if status >= 500 {
        return PlatformFailure::new(
            ErrorClass::Retryable,
            code,
            format!("{provider}'s token endpoint failed with HTTP {status}{said}; Herald will try again"),
        );
    }
    if status == 401 || matches!(error, "invalid_client" | "unauthorized_client") {
        return PlatformFailure::new(
            ErrorClass::Permanent,
            code,
            format!(
                "{provider} refused Herald's OAuth client credentials{said}: the client id or \
                 secret is misconfigured; check them against the app in {provider}'s developer portal"
            ),
        );
    }
    match (call, error) {
        (TokenCall::Refresh, "invalid_grant" | "invalid_request") => PlatformFailure::new(
            ErrorClass::ReauthorizationRequired,
            code,
            format!(
                "{provider} refused the refresh token{said}: it was used, revoked or has expired; \
                 reconnect the account"
            ),
        ),
        (TokenCall::Code, "invalid_grant" | "invalid_request") => PlatformFailure::new(
            ErrorClass::Permanent,
            code,
            format!(
                "{provider} refused the authorization code{said}: codes are single-use and \
                 short-lived; start connecting the account again"
            ),
        ),
        _ => PlatformFailure::new(
            ErrorClass::Permanent,
            code,
            format!("{provider}'s OAuth endpoint refused the request with HTTP {status}{said}"),
        ),
    }
}

fn form_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn transport_failure(provider: &str, error: &reqwest::Error) -> PlatformFailure {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "lost the connection"
    };
    PlatformFailure::new(
        ErrorClass::Retryable,
        "network",
        format!("the request to {provider}'s token endpoint {what}; Herald will try again"),
    )
}

/// `text` with every non-empty secret replaced, in case a server echoes one back.
pub(crate) fn redact(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|s| s.len() >= 4)
        .fold(text.to_owned(), |t, s| t.replace(s, "[redacted]"))
}

/// What went wrong talking to the token endpoint, with what classification needs.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("the token endpoint answered HTTP {status}")]
    Status {
        status: u16,
        retry_after: Option<DateTime<Utc>>,
        body: Vec<u8>,
    },
    #[error("the token endpoint could not be reached")]
    Transport(#[source] reqwest::Error),
}

/// `oauth2`'s HTTP client for reqwest, except that a non-success status becomes an error that
/// keeps the status, `Retry-After` and body.
struct StatusAwareHttp {
    http: reqwest::Client,
}

impl<'c> AsyncHttpClient<'c> for StatusAwareHttp {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request).map_err(HttpError::Transport)?;
            let response = self
                .http
                .execute(request)
                .await
                .map_err(HttpError::Transport)?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await.map_err(HttpError::Transport)?;
            if !status.is_success() {
                return Err(HttpError::Status {
                    status: status.as_u16(),
                    retry_after: retry_after(&headers, Utc::now()),
                    body: body.to_vec(),
                });
            }
            // oauth2 accepts only 200 (a 201 or 203 with a token body is still a success).
            let mut builder = oauth2::http::Response::builder().status(200);
            for (name, value) in &headers {
                builder = builder.header(name, value);
            }
            Ok(builder
                .body(body.to_vec())
                .unwrap_or_else(|_| oauth2::http::Response::new(Vec::new())))
        })
    }
}

/// The instant a `Retry-After` header (delay in seconds or an HTTP date) points at.
pub fn retry_after(
    headers: &reqwest::header::HeaderMap,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return now.checked_add_signed(TimeDelta::try_seconds(i64::try_from(secs).ok()?)?);
    }
    // IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") is an RFC 2822 date.
    DateTime::parse_from_rfc2822(value)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    fn endpoints(use_pkce: bool) -> OAuthEndpoints {
        OAuthEndpoints {
            provider: "X".into(),
            authorize_url: Url::parse("https://x.example/i/oauth2/authorize").unwrap(),
            token_url: Url::parse("https://api.x.example/2/oauth2/token").unwrap(),
            revoke_url: None,
            client_id: "client-1".into(),
            client_secret: Some(Secret::new("very-secret")),
            scopes: vec!["tweet.read".into(), "offline.access".into()],
            use_pkce,
            client_auth: ClientAuth::Basic,
        }
    }

    fn class(call: TokenCall, status: u16, body: &str) -> PlatformFailure {
        classify_token_error("X", call, status, None, body.as_bytes())
    }

    #[test]
    fn start_sends_state_scopes_redirect_and_s256_challenge() {
        let client = OAuthClient::new(endpoints(true), Duration::from_secs(5)).unwrap();
        let start = client.start("http://localhost:8080/callback");
        let query: std::collections::HashMap<_, _> = start.url.query_pairs().collect();
        assert_eq!(query["response_type"], "code");
        assert_eq!(query["client_id"], "client-1");
        assert_eq!(query["redirect_uri"], "http://localhost:8080/callback");
        assert_eq!(query["scope"], "tweet.read offline.access");
        assert_eq!(query["state"], start.state.as_str());
        assert_eq!(query["code_challenge_method"], "S256");
        assert!(start.pkce_verifier.expose().len() >= 43);
        assert_ne!(
            start.state,
            client.start("http://localhost:8080/callback").state
        );
    }

    #[test]
    fn start_without_pkce_sends_no_challenge() {
        let client = OAuthClient::new(endpoints(false), Duration::from_secs(5)).unwrap();
        let start = client.start("http://localhost/cb");
        assert!(!start.url.query_pairs().any(|(k, _)| k == "code_challenge"));
        assert_eq!(start.pkce_verifier.expose(), "");
    }

    #[test]
    fn used_or_revoked_refresh_token_needs_reauthorization() {
        let x = r#"{"error":"invalid_request","error_description":"Value passed for the token was invalid."}"#;
        let f = class(TokenCall::Refresh, 400, x);
        assert_eq!(f.class, ErrorClass::ReauthorizationRequired);
        assert_eq!(f.code, "invalid_request");
        assert!(f.message.contains("reconnect"));
        let f = class(TokenCall::Refresh, 400, r#"{"error":"invalid_grant"}"#);
        assert_eq!(f.class, ErrorClass::ReauthorizationRequired);
    }

    #[test]
    fn refused_code_is_permanent() {
        let f = class(TokenCall::Code, 400, r#"{"error":"invalid_grant"}"#);
        assert_eq!(f.class, ErrorClass::Permanent);
        assert!(f.message.contains("start connecting"));
    }

    #[test]
    fn bad_client_credentials_are_permanent_and_say_so() {
        for (status, body) in [
            (
                401,
                r#"{"error":"unauthorized_client","error_description":"Missing valid authorization header"}"#,
            ),
            (400, r#"{"error":"invalid_client"}"#),
            (401, ""),
        ] {
            let f = class(TokenCall::Refresh, status, body);
            assert_eq!(f.class, ErrorClass::Permanent, "{status} {body}");
            assert!(f.message.contains("misconfigured"), "{}", f.message);
        }
    }

    #[test]
    fn server_errors_retry_and_429_waits() {
        assert_eq!(
            class(TokenCall::Refresh, 503, "").class,
            ErrorClass::Retryable
        );
        assert_eq!(class(TokenCall::Code, 500, "<html>").code, "http_500");
        let at = Utc::now() + TimeDelta::seconds(30);
        let f = classify_token_error("X", TokenCall::Refresh, 429, Some(at), b"");
        assert_eq!(f.class, ErrorClass::RateLimited);
        assert_eq!(f.not_before, Some(at));
    }

    #[test]
    fn echoed_secrets_are_redacted() {
        let msg = redact("token abc123def was invalid", &["abc123def", ""]);
        assert_eq!(msg, "token [redacted] was invalid");
    }

    #[test]
    fn retry_after_seconds_and_http_date() {
        let now = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("30"));
        assert_eq!(retry_after(&h, now), Some(now + TimeDelta::seconds(30)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 01 Jan 2025 00:02:00 GMT"),
        );
        assert_eq!(retry_after(&h, now), Some(now + TimeDelta::minutes(2)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }
}
