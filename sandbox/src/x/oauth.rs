//! X's OAuth 2.0 Authorization Code + PKCE flow (platform-facts §1.2).

use std::time::Instant;

use actix_web::http::header::{AUTHORIZATION, LOCATION};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::problem::oauth_error;
use super::{blocking_fault_response, delay_if_timeout_after_success, param, query_pairs};
use super::{XEndpoint, XState};
use crate::faults::Fault;
use crate::oauth::{
    constant_time_eq, parse_basic_auth, parse_redirect_uri, random_token, redirect_with,
    verify_pkce, PkceMethod,
};
use crate::twin::Twin as _;

/// Scopes X documents for OAuth 2.0 user context.
const KNOWN_SCOPES: &[&str] = &[
    "tweet.read",
    "tweet.write",
    "tweet.moderate.write",
    "users.email",
    "users.read",
    "follows.read",
    "follows.write",
    "offline.access",
    "space.read",
    "mute.read",
    "mute.write",
    "like.read",
    "like.write",
    "list.read",
    "list.write",
    "block.read",
    "block.write",
    "bookmark.read",
    "bookmark.write",
    "media.write",
    "dm.read",
    "dm.write",
];

const INVALID_CODE: &str = "Value passed for the authorization code was invalid.";
const INVALID_TOKEN: &str = "Value passed for the token was invalid.";

fn bad_request_page(detail: &str) -> HttpResponse {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_request", detail)
}

fn valid_username(u: &str) -> bool {
    (1..=15).contains(&u.len()) && u.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `GET /i/oauth2/authorize`: validates, auto-approves, redirects with a code.
pub(crate) async fn authorize(state: web::Data<XState>, req: HttpRequest) -> HttpResponse {
    let q = query_pairs(&req);
    let cfg = &state.config;

    // Until client and redirect URI are trusted, errors must not redirect.
    if param(&q, "client_id") != Some(cfg.client_id.as_str()) {
        return bad_request_page("Missing or unknown client_id.");
    }
    let Some(redirect_raw) = param(&q, "redirect_uri") else {
        return bad_request_page("Missing required parameter [redirect_uri].");
    };
    let registered =
        cfg.allow_any_redirect_uri || cfg.redirect_uris.iter().any(|u| u == redirect_raw);
    let Some(redirect) = parse_redirect_uri(redirect_raw).filter(|_| registered) else {
        return bad_request_page("Invalid redirect_uri.");
    };

    let client_state = param(&q, "state");
    let fail = |description: &str| {
        let mut params = vec![
            ("error", "invalid_request"),
            ("error_description", description),
        ];
        if let Some(s) = client_state {
            params.push(("state", s));
        }
        HttpResponse::Found()
            .insert_header((LOCATION, redirect_with(&redirect, &params)))
            .finish()
    };

    if param(&q, "response_type") != Some("code") {
        return fail("response_type must be code.");
    }
    let Some(client_state) = client_state.filter(|s| !s.is_empty()) else {
        return fail("Missing required parameter [state].");
    };
    if client_state.chars().count() > 500 {
        return fail("state must be at most 500 characters.");
    }
    let scopes: Vec<String> = param(&q, "scope")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if scopes.is_empty() {
        return fail("Missing required parameter [scope].");
    }
    if let Some(bad) = scopes.iter().find(|s| !KNOWN_SCOPES.contains(&s.as_str())) {
        return fail(&format!("Unknown scope [{bad}]."));
    }
    let Some(challenge) = param(&q, "code_challenge").filter(|c| !c.is_empty()) else {
        return fail("Missing required parameter [code_challenge].");
    };
    let Some(method) = param(&q, "code_challenge_method").and_then(PkceMethod::parse) else {
        return fail("code_challenge_method must be S256 or plain.");
    };
    let sandbox_user = param(&q, "sandbox_user");
    if sandbox_user.is_some_and(|u| !valid_username(u)) {
        return fail("sandbox_user must be 1-15 characters of [A-Za-z0-9_].");
    }

    let code = random_token(32);
    {
        let mut inner = state.lock();
        let user = inner.user_by_username(sandbox_user.unwrap_or(super::DEFAULT_USERNAME));
        inner.auth_codes.insert(
            code.clone(),
            super::state::AuthCode {
                client_id: cfg.client_id.clone(),
                redirect_uri: redirect_raw.to_owned(),
                challenge: challenge.to_owned(),
                method,
                scopes,
                user_id: user.id,
                expires_at: Instant::now() + cfg.auth_code_lifetime,
            },
        );
    }
    HttpResponse::Found()
        .insert_header((
            LOCATION,
            redirect_with(&redirect, &[("state", client_state), ("code", &code)]),
        ))
        .finish()
}

/// Authenticates the OAuth client: Basic auth (confidential) or `client_id` in
/// the body (public). Returns whether it is the registered client.
fn client_authenticated(state: &XState, req: &HttpRequest, form: &[(String, String)]) -> bool {
    let cfg = &state.config;
    let body_id = param(form, "client_id");
    match req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
    {
        Some(h) => match parse_basic_auth(h) {
            Some((id, secret)) => {
                id == cfg.client_id
                    && constant_time_eq(secret.as_bytes(), cfg.client_secret.as_bytes())
                    && body_id.is_none_or(|b| b == id)
            }
            None => false,
        },
        None => body_id == Some(cfg.client_id.as_str()),
    }
}

fn unauthorized_client() -> HttpResponse {
    oauth_error(
        StatusCode::UNAUTHORIZED,
        "unauthorized_client",
        "Missing valid authorization header",
    )
}

fn token_response(
    state: &XState,
    access: String,
    refresh: Option<String>,
    scope: String,
) -> HttpResponse {
    let mut body = json!({
        "token_type": "bearer",
        "expires_in": state.config.access_token_lifetime.as_secs(),
        "access_token": access,
        "scope": scope,
    });
    if let Some(r) = refresh {
        body["refresh_token"] = json!(r);
    }
    HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(body)
}

/// `POST /2/oauth2/token`: authorization-code and refresh-token grants.
pub(crate) async fn token(
    state: web::Data<XState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    if !client_authenticated(&state, &req, &form) {
        return unauthorized_client();
    }
    let fault = state.take_fault(XEndpoint::Token);
    if let Some(f) = &fault {
        tracing::info!(fault = ?f, "x sandbox applying fault to token endpoint");
        if let Some(resp) = blocking_fault_response(f, None).await {
            return resp;
        }
    }
    let resp = match param(&form, "grant_type") {
        Some("authorization_code") => exchange_code(&state, &form, fault.as_ref()),
        Some("refresh_token") => refresh(&state, &form, fault.as_ref()),
        Some(_) => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Only authorization_code and refresh_token grants are supported.",
        ),
        None => bad_request_page("Missing required parameter [grant_type]."),
    };
    delay_if_timeout_after_success(fault.as_ref()).await;
    resp
}

fn exchange_code(state: &XState, form: &[(String, String)], fault: Option<&Fault>) -> HttpResponse {
    let cfg = &state.config;
    let (Some(code), Some(verifier)) = (param(form, "code"), param(form, "code_verifier")) else {
        return bad_request_page("Missing required parameter [code] or [code_verifier].");
    };
    let mut inner = state.lock();
    // Single use: the code is gone after any exchange attempt.
    let Some(ac) = inner.auth_codes.remove(code) else {
        return bad_request_page(INVALID_CODE);
    };
    let valid = Instant::now() < ac.expires_at
        && ac.client_id == cfg.client_id
        && param(form, "redirect_uri") == Some(ac.redirect_uri.as_str())
        && verify_pkce(ac.method, &ac.challenge, verifier);
    if !valid {
        return bad_request_page(INVALID_CODE);
    }
    let scope = ac.scopes.join(" ");
    let grant = inner.new_grant(ac.user_id, ac.client_id, ac.scopes);
    let expired = matches!(fault, Some(Fault::ExpireToken));
    let (access, refresh) = inner.issue_tokens(grant, cfg.access_token_lifetime, expired);
    if matches!(fault, Some(Fault::RevokeGrant)) {
        inner.revoke_grant(grant);
    }
    drop(inner);
    token_response(state, access, refresh, scope)
}

fn refresh(state: &XState, form: &[(String, String)], fault: Option<&Fault>) -> HttpResponse {
    let cfg = &state.config;
    let Some(presented) = param(form, "refresh_token") else {
        return bad_request_page("Missing required parameter [refresh_token].");
    };
    let mut inner = state.lock();
    let Some(rt) = inner.refresh_tokens.get(presented).cloned() else {
        return bad_request_page(INVALID_TOKEN);
    };
    if matches!(fault, Some(Fault::RevokeGrant)) {
        inner.revoke_grant(rt.grant_id);
    }
    let Some(grant) = inner.grants.get(&rt.grant_id).cloned() else {
        return bad_request_page(INVALID_TOKEN);
    };
    if rt.used || grant.revoked || grant.client_id != cfg.client_id {
        return bad_request_page(INVALID_TOKEN);
    }
    // Rotation: the presented refresh token and the grant's access tokens die.
    if let Some(t) = inner.refresh_tokens.get_mut(presented) {
        t.used = true;
    }
    inner.invalidate_access_tokens(rt.grant_id);
    let expired = matches!(fault, Some(Fault::ExpireToken));
    let (access, refresh) = inner.issue_tokens(rt.grant_id, cfg.access_token_lifetime, expired);
    drop(inner);
    token_response(state, access, refresh, grant.scopes.join(" "))
}

/// `POST /2/oauth2/revoke`: revokes an access token, or a refresh token's whole grant.
pub(crate) async fn revoke(
    state: web::Data<XState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    if !client_authenticated(&state, &req, &form) {
        return unauthorized_client();
    }
    let Some(token) = param(&form, "token") else {
        return bad_request_page("Missing required parameter [token].");
    };
    let mut inner = state.lock();
    if let Some(t) = inner.access_tokens.get_mut(token) {
        t.invalidated = true;
    } else if let Some(grant_id) = inner.refresh_tokens.get(token).map(|t| t.grant_id) {
        inner.revoke_grant(grant_id);
    }
    // RFC 7009: unknown tokens are not an error.
    HttpResponse::Ok().json(json!({ "revoked": true }))
}
