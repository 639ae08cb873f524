//! Login Kit OAuth v2 (platform-facts §2.1): authorize, token (code and refresh), revoke.
//!
//! The token endpoints answer flat JSON, not the API envelope: `{access_token, expires_in,
//! open_id, refresh_expires_in, refresh_token, scope, token_type}` or
//! `{error, error_description, log_id}`. TikTok does not document the HTTP status of a token
//! error; the twin uses 400 (401 for a wrong client secret), so a client must read the body.

use std::time::{Duration, Instant};

use actix_web::http::header::LOCATION;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::state::AuthCode;
use super::{log_id, TiktokEndpoint, TiktokState, DEFAULT_USERNAME};
use crate::oauth::{constant_time_eq, parse_redirect_uri, random_token, redirect_with};
use crate::twin::Twin as _;

/// Scopes the twin knows; `user.info.basic` is always required.
const KNOWN_SCOPES: &[&str] = &[
    "user.info.basic",
    "user.info.profile",
    "user.info.stats",
    "video.list",
    "video.publish",
    "video.upload",
];
const CODE_LIFETIME: Duration = Duration::from_secs(600);

/// A flat OAuth error: `{error, error_description, log_id}`.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({
        "error": error,
        "error_description": description,
        "log_id": log_id(),
    }))
}

fn form(req: &HttpRequest, body: &[u8]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(req.query_string().as_bytes())
            .into_owned()
            .collect();
    pairs.extend(url::form_urlencoded::parse(body).into_owned());
    pairs
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn valid_username(u: &str) -> bool {
    (1..=24).contains(&u.len())
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// Whether `verifier` matches `challenge`. TikTok's desktop flow is said (unconfirmed) to use the
/// hex SHA-256 of the verifier rather than RFC 7636's base64url; the twin accepts either.
fn pkce_matches(challenge: &str, verifier: &str) -> bool {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(verifier.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let b64 = crate::oauth::s256_challenge(verifier);
    constant_time_eq(challenge.as_bytes(), b64.as_bytes())
        || constant_time_eq(challenge.to_ascii_lowercase().as_bytes(), hex.as_bytes())
}

/// `GET /v2/auth/authorize/`: validates, auto-approves as `sandbox_user` (default
/// `herald_sandbox`; `sandbox_private=true` makes the account private), redirects with `code`,
/// `scopes` and `state`.
pub(crate) async fn authorize(state: web::Data<TiktokState>, req: HttpRequest) -> HttpResponse {
    let q = form(&req, &[]);
    // Until client and redirect URI are trusted, errors must not redirect.
    if param(&q, "client_key") != Some(state.config.client_key.as_str()) {
        return HttpResponse::BadRequest()
            .body("client_key: this app is not registered with TikTok.");
    }
    let Some(redirect) = param(&q, "redirect_uri").and_then(parse_redirect_uri) else {
        return HttpResponse::BadRequest().body("redirect_uri: must be an absolute URL.");
    };
    if redirect.query().is_some() || redirect.as_str().len() >= 512 {
        return HttpResponse::BadRequest()
            .body("redirect_uri: must be static (no query) and under 512 characters.");
    }
    let client_state = param(&q, "state").unwrap_or_default();
    let fail = |error: &str, description: &str| {
        let mut p = vec![("error", error), ("error_description", description)];
        if !client_state.is_empty() {
            p.push(("state", client_state));
        }
        HttpResponse::Found()
            .insert_header((LOCATION, redirect_with(&redirect, &p)))
            .finish()
    };
    if param(&q, "response_type") != Some("code") {
        return fail("invalid_request", "response_type must be code");
    }
    let scopes: Vec<String> = param(&q, "scope")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(bad) = scopes.iter().find(|s| !KNOWN_SCOPES.contains(&s.as_str())) {
        return fail("invalid_scope", &format!("unknown scope {bad}"));
    }
    if !scopes.iter().any(|s| s == "user.info.basic") {
        return fail("invalid_scope", "the user.info.basic scope is required");
    }
    let code_challenge = param(&q, "code_challenge").map(str::to_owned);
    if code_challenge.is_some() && param(&q, "code_challenge_method") != Some("S256") {
        return fail("invalid_request", "code_challenge_method must be S256");
    }
    let username = param(&q, "sandbox_user").unwrap_or(DEFAULT_USERNAME);
    if !valid_username(username) {
        return fail(
            "invalid_request",
            "sandbox_user must be 1-24 characters of [A-Za-z0-9_.]",
        );
    }
    let private = param(&q, "sandbox_private") == Some("true");
    let code = random_token(32);
    {
        let mut inner = state.lock();
        let mut creator = inner.creator_by_username(username);
        if private {
            creator.private = true;
            inner
                .creators
                .insert(creator.open_id.clone(), creator.clone());
        }
        inner.codes.insert(
            code.clone(),
            AuthCode {
                redirect_uri: redirect.to_string(),
                open_id: creator.open_id,
                scopes: scopes.clone(),
                code_challenge,
                expires_at: Instant::now() + CODE_LIFETIME,
            },
        );
    }
    let granted = scopes.join(",");
    let mut p = vec![("code", code.as_str()), ("scopes", granted.as_str())];
    if !client_state.is_empty() {
        p.push(("state", client_state));
    }
    HttpResponse::Found()
        .insert_header((LOCATION, redirect_with(&redirect, &p)))
        .finish()
}

fn client_ok(state: &TiktokState, p: &[(String, String)]) -> Result<(), HttpResponse> {
    if param(p, "client_key") != Some(state.config.client_key.as_str()) {
        return Err(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client key or secret is incorrect.",
        ));
    }
    let secret_ok = param(p, "client_secret")
        .is_some_and(|s| constant_time_eq(s.as_bytes(), state.config.client_secret.as_bytes()));
    if !secret_ok {
        return Err(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client key or secret is incorrect.",
        ));
    }
    Ok(())
}

/// The token-endpoint fault, if one is queued and blocks the call.
async fn token_fault(state: &TiktokState, endpoint: TiktokEndpoint) -> Option<HttpResponse> {
    if let Some(injected) = state.take_error(endpoint) {
        return Some(oauth_error(
            injected.status,
            &injected.code,
            &injected.message,
        ));
    }
    let fault = state.take_fault(endpoint)?;
    match fault {
        crate::Fault::RateLimited { .. } => Some(oauth_error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            "Too many requests.",
        )),
        crate::Fault::ServerError { status } => Some(oauth_error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "server_error",
            "Something went wrong. Please try again later.",
        )),
        crate::Fault::Timeout { secs } => {
            tokio::time::sleep(crate::faults::secs(secs)).await;
            Some(oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "The service is temporarily unavailable.",
            ))
        }
        _ => None,
    }
}

fn token_response(
    state: &TiktokState,
    access: &str,
    refresh: &str,
    open_id: &str,
    scopes: &[String],
    refresh_expires_in: u64,
) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "access_token": access,
        "expires_in": state.config.access_token_lifetime.as_secs(),
        "open_id": open_id,
        "refresh_expires_in": refresh_expires_in,
        "refresh_token": refresh,
        "scope": scopes.join(","),
        "token_type": "Bearer",
    }))
}

/// `POST /v2/oauth/token/` with `grant_type=authorization_code` or `refresh_token`.
pub(crate) async fn token(
    state: web::Data<TiktokState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(resp) = token_fault(&state, TiktokEndpoint::Token).await {
        return resp;
    }
    let p = form(&req, &body);
    if let Err(resp) = client_ok(&state, &p) {
        return resp;
    }
    match param(&p, "grant_type") {
        Some("authorization_code") => exchange_code(&state, &p),
        Some("refresh_token") => refresh(&state, &p),
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type must be authorization_code or refresh_token.",
        ),
    }
}

fn exchange_code(state: &TiktokState, p: &[(String, String)]) -> HttpResponse {
    let code = param(p, "code").unwrap_or_default();
    let redirect_uri = param(p, "redirect_uri").unwrap_or_default();
    let mut inner = state.lock();
    // Codes are single-use: removed whether or not the rest matches.
    let Some(grant) = inner.codes.remove(code) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Authorization code is expired or invalid.",
        );
    };
    if Instant::now() > grant.expires_at {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Authorization code is expired.",
        );
    }
    let redirect_matches =
        parse_redirect_uri(redirect_uri).is_some_and(|u| u.as_str() == grant.redirect_uri);
    if !redirect_matches {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "redirect_uri does not match the one of the authorization request.",
        );
    }
    if let Some(challenge) = &grant.code_challenge {
        let ok = param(p, "code_verifier").is_some_and(|v| pkce_matches(challenge, v));
        if !ok {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "code_verifier does not match the code_challenge.",
            );
        }
    }
    let (access, refresh) =
        inner.issue_tokens(&state.config, &grant.open_id, grant.scopes.clone(), None);
    token_response(
        state,
        &access,
        &refresh,
        &grant.open_id,
        &grant.scopes,
        state.config.refresh_token_lifetime.as_secs(),
    )
}

/// Refresh tokens rotate: the one sent stops working once a new one is issued. The new refresh
/// token keeps the original expiry (its lifetime counts from the first issuance).
fn refresh(state: &TiktokState, p: &[(String, String)]) -> HttpResponse {
    let presented = param(p, "refresh_token").unwrap_or_default();
    let mut inner = state.lock();
    let Some(old) = inner.refresh_tokens.get(presented).cloned() else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Refresh token is invalid or expired.",
        );
    };
    let now = Instant::now();
    if old.invalidated || now >= old.expires_at {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Refresh token is invalid or expired.",
        );
    }
    if let Some(t) = inner.refresh_tokens.get_mut(presented) {
        t.invalidated = true;
    }
    let (access, refresh) = inner.issue_tokens(
        &state.config,
        &old.open_id,
        old.scopes.clone(),
        Some(old.grant),
    );
    if let Some(t) = inner.refresh_tokens.get_mut(&refresh) {
        t.expires_at = old.expires_at;
    }
    let refresh_left = old.expires_at.saturating_duration_since(now).as_secs();
    token_response(
        state,
        &access,
        &refresh,
        &old.open_id,
        &old.scopes,
        refresh_left,
    )
}

/// `POST /v2/oauth/revoke/` with `client_key`, `client_secret`, `token` (an access token):
/// every token of that authorization stops working.
pub(crate) async fn revoke(
    state: web::Data<TiktokState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(resp) = token_fault(&state, TiktokEndpoint::Revoke).await {
        return resp;
    }
    let p = form(&req, &body);
    if let Err(resp) = client_ok(&state, &p) {
        return resp;
    }
    let token = param(&p, "token").unwrap_or_default();
    let mut inner = state.lock();
    let grant = inner
        .access_tokens
        .get(token)
        .or_else(|| inner.refresh_tokens.get(token))
        .map(|t| t.grant);
    match grant {
        Some(grant) => {
            inner.revoke_grant(grant);
            HttpResponse::Ok().json(json!({}))
        }
        None => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The token is invalid.",
        ),
    }
}
