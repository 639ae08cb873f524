//! Google's OAuth 2.0 endpoints (facts §7.2): authorization code with optional PKCE,
//! `access_type=offline` for a refresh token, refresh without rotation, revocation.

use std::time::{Duration, Instant};

use actix_web::http::header::{AUTHORIZATION, LOCATION};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::state::AuthCode;
use super::{
    blocking_fault_response, finish, param, query_pairs, YouTubeEndpoint, YouTubeState,
    DEFAULT_USERNAME, SCOPE_PREFIX,
};
use crate::faults::Fault;
use crate::oauth::{
    constant_time_eq, parse_basic_auth, parse_redirect_uri, random_token, redirect_with,
    verify_pkce, PkceMethod,
};
use crate::twin::Twin as _;

/// Scopes the twin grants: YouTube's (discovery doc) and the OpenID ones.
const YOUTUBE_SCOPES: &[&str] = &[
    "youtube",
    "youtube.channel-memberships.creator",
    "youtube.force-ssl",
    "youtube.readonly",
    "youtube.upload",
    "youtubepartner",
    "youtubepartner-channel-audit",
];
const OPENID_SCOPES: &[&str] = &["openid", "email", "profile"];
const CODE_LIFETIME: Duration = Duration::from_secs(600);

/// Google's token-endpoint error body `{"error","error_description"}`.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(("cache-control", "no-store"))
        .json(json!({ "error": error, "error_description": description }))
}

/// An error page for a request that cannot be trusted to redirect.
fn error_page(status: StatusCode, error: &str, description: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(format!("Error {}: {error}\n{description}", status.as_u16()))
}

fn known_scope(scope: &str) -> bool {
    OPENID_SCOPES.contains(&scope)
        || scope
            .strip_prefix(SCOPE_PREFIX)
            .is_some_and(|s| YOUTUBE_SCOPES.contains(&s))
}

fn valid_username(u: &str) -> bool {
    (1..=30).contains(&u.len()) && u.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `GET /o/oauth2/v2/auth`: validates, auto-approves, redirects with `code` (and `state`).
pub(crate) async fn authorize(state: web::Data<YouTubeState>, req: HttpRequest) -> HttpResponse {
    let q = query_pairs(&req);
    // Until client and redirect URI are trusted, errors must not redirect.
    if param(&q, "client_id") != Some(state.config.client_id.as_str()) {
        return error_page(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The OAuth client was not found.",
        );
    }
    let Some(redirect) = param(&q, "redirect_uri").and_then(parse_redirect_uri) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "redirect_uri_mismatch",
            "The redirect URI in the request does not match the ones authorized for the OAuth client.",
        );
    };
    let client_state = param(&q, "state").filter(|s| !s.is_empty());
    let fail = |error: &str, description: &str| {
        let mut p = vec![("error", error), ("error_description", description)];
        if let Some(s) = client_state {
            p.push(("state", s));
        }
        HttpResponse::Found()
            .insert_header((LOCATION, redirect_with(&redirect, &p)))
            .finish()
    };
    if param(&q, "response_type") != Some("code") {
        return fail("unsupported_response_type", "response_type must be code");
    }
    let scopes: Vec<String> = param(&q, "scope")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if scopes.is_empty() {
        return fail("invalid_request", "Missing required parameter: scope");
    }
    if let Some(bad) = scopes.iter().find(|s| !known_scope(s)) {
        return fail(
            "invalid_scope",
            &format!("Some requested scopes were invalid. {{invalid=[{bad}]}}"),
        );
    }
    let offline = match param(&q, "access_type").unwrap_or("online") {
        "online" => false,
        "offline" => true,
        _ => {
            return fail(
                "invalid_request",
                "Invalid access_type: must be online or offline",
            )
        }
    };
    let prompt_consent = param(&q, "prompt")
        .unwrap_or_default()
        .split_whitespace()
        .any(|p| p == "consent");
    let challenge = match param(&q, "code_challenge").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => {
            let method = match param(&q, "code_challenge_method") {
                None => PkceMethod::Plain,
                Some(m) => match PkceMethod::parse(m) {
                    Some(m) => m,
                    None => {
                        return fail(
                            "invalid_request",
                            "Invalid code_challenge_method: must be S256 or plain",
                        )
                    }
                },
            };
            if !(43..=128).contains(&c.len()) {
                return fail("invalid_request", "Invalid code_challenge length");
            }
            Some((c.to_owned(), method))
        }
    };
    let username = param(&q, "sandbox_user").unwrap_or(DEFAULT_USERNAME);
    if !valid_username(username) {
        return fail(
            "invalid_request",
            "sandbox_user must be 1-30 characters of [A-Za-z0-9_]",
        );
    }
    let code = format!("4/{}", random_token(32));
    {
        let mut inner = state.lock();
        let user = inner.user_by_username(username);
        // Google issues a refresh token on the first consent, and again only when the user is
        // asked to consent again.
        let first_consent = inner.consented.insert(user.id.clone());
        inner.codes.insert(
            code.clone(),
            AuthCode {
                redirect_uri: redirect.to_string(),
                user_id: user.id,
                scopes,
                challenge,
                offline: offline && (first_consent || prompt_consent),
                expires_at: Instant::now() + CODE_LIFETIME,
            },
        );
    }
    let mut p = vec![("code", code.as_str())];
    if let Some(s) = client_state {
        p.push(("state", s));
    }
    let scope_echo = state
        .lock()
        .codes
        .get(&code)
        .map(|c| c.scopes.join(" "))
        .unwrap_or_default();
    p.push(("scope", &scope_echo));
    HttpResponse::Found()
        .insert_header((LOCATION, redirect_with(&redirect, &p)))
        .finish()
}

/// Whether the request authenticates the registered client (body or Basic).
fn client_ok(state: &YouTubeState, req: &HttpRequest, form: &[(String, String)]) -> bool {
    let cfg = &state.config;
    let (id, secret) = match req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(parse_basic_auth)
    {
        Some((id, secret)) => (Some(id), Some(secret)),
        None => (
            param(form, "client_id").map(str::to_owned),
            param(form, "client_secret").map(str::to_owned),
        ),
    };
    id.as_deref() == Some(cfg.client_id.as_str())
        && secret.is_some_and(|s| constant_time_eq(s.as_bytes(), cfg.client_secret.as_bytes()))
}

fn token_body(
    access: String,
    refresh: Option<String>,
    expires_in: u64,
    scopes: &[String],
) -> HttpResponse {
    let mut body = json!({
        "access_token": access,
        "expires_in": expires_in,
        "scope": scopes.join(" "),
        "token_type": "Bearer",
    });
    if let Some(r) = refresh {
        body["refresh_token"] = json!(r);
    }
    HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(body)
}

/// `POST /token`: `authorization_code` and `refresh_token` grants.
pub(crate) async fn token(
    state: web::Data<YouTubeState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    if !client_ok(&state, &req, &form) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Unauthorized");
    }
    let fault = state.take_fault(YouTubeEndpoint::Token);
    if let Some(f) = &fault {
        tracing::info!(fault = ?f, "youtube sandbox applying fault to token endpoint");
        if let Some(resp) = blocking_fault_response(f).await {
            return resp;
        }
    }
    let resp = match param(&form, "grant_type") {
        Some("authorization_code") => exchange_code(&state, &form, fault.as_ref()),
        Some("refresh_token") => refresh(&state, &form, fault.as_ref()),
        Some(_) => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid grant_type",
        ),
        None => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: grant_type",
        ),
    };
    finish(fault.as_ref(), resp).await
}

/// An access-token lifetime: the configured one, or already over after `expire_token`.
fn lifetime(state: &YouTubeState, fault: Option<&Fault>) -> Duration {
    if matches!(fault, Some(Fault::ExpireToken)) {
        Duration::ZERO
    } else {
        state.config.access_token_lifetime
    }
}

fn exchange_code(
    state: &YouTubeState,
    form: &[(String, String)],
    fault: Option<&Fault>,
) -> HttpResponse {
    let Some(code) = param(form, "code") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: code",
        );
    };
    let mut inner = state.lock();
    // Single use: the code is gone after any exchange attempt.
    let Some(ac) = inner.codes.remove(code) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
    };
    if Instant::now() > ac.expires_at {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
    }
    let redirect_matches = param(form, "redirect_uri")
        .and_then(parse_redirect_uri)
        .is_some_and(|u| u.as_str() == ac.redirect_uri);
    if !redirect_matches {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "redirect_uri_mismatch",
            "Bad Request",
        );
    }
    if let Some((challenge, method)) = &ac.challenge {
        let Some(verifier) = param(form, "code_verifier") else {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "Missing code verifier.",
            );
        };
        if !verify_pkce(*method, challenge, verifier) {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "Invalid code verifier.",
            );
        }
    }
    let grant = inner.new_grant(&ac.user_id, ac.scopes.clone());
    let lifetime = lifetime(state, fault);
    let (access, refresh) = inner.issue(grant, lifetime, ac.offline);
    if matches!(fault, Some(Fault::RevokeGrant)) {
        inner.revoke_grant(grant);
    }
    token_body(
        access,
        refresh,
        state.config.access_token_lifetime.as_secs(),
        &ac.scopes,
    )
}

fn refresh(state: &YouTubeState, form: &[(String, String)], fault: Option<&Fault>) -> HttpResponse {
    let Some(presented) = param(form, "refresh_token") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: refresh_token",
        );
    };
    let mut inner = state.lock();
    let Some(grant_id) = inner.refresh_tokens.get(presented).copied() else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
    };
    if matches!(fault, Some(Fault::RevokeGrant)) {
        inner.revoke_grant(grant_id);
    }
    let Some(grant) = inner.grants.get(&grant_id).cloned() else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
    };
    if grant.revoked {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Token has been expired or revoked.",
        );
    }
    // No rotation: the refresh token stays valid and none is returned (facts §7.2).
    let (access, _) = inner.issue(grant_id, lifetime(state, fault), false);
    token_body(
        access,
        None,
        state.config.access_token_lifetime.as_secs(),
        &grant.scopes,
    )
}

/// `POST /revoke`: revokes the grant of an access or refresh token (`token` in the body or
/// query). Unknown or already revoked tokens answer 400 `invalid_token`, as Google does.
pub(crate) async fn revoke(
    state: web::Data<YouTubeState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let mut form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    form.extend(query_pairs(&req));
    if let Some(f) = state.take_fault(YouTubeEndpoint::Revoke) {
        if let Some(resp) = blocking_fault_response(&f).await {
            return resp;
        }
    }
    let Some(token) = param(&form, "token") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: token",
        );
    };
    let mut inner = state.lock();
    let grant_id = inner
        .access_tokens
        .get(token)
        .map(|t| t.grant_id)
        .or_else(|| inner.refresh_tokens.get(token).copied());
    let live = grant_id
        .and_then(|g| inner.grants.get(&g))
        .is_some_and(|g| !g.revoked);
    match grant_id {
        Some(g) if live => {
            inner.revoke_grant(g);
            HttpResponse::Ok().json(json!({}))
        }
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_token",
            "Token expired or revoked",
        ),
    }
}
