//! Reddit's OAuth2 (platform-facts §9.1): authorize with `duration`, the token endpoint with
//! HTTP Basic client authentication, permanent non-rotating refresh tokens, revocation.

use std::time::{Duration, Instant};

use actix_web::http::header::LOCATION;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::state::AuthCode;
use super::{
    blocking_fault_response, param, params, reddit_error, user_agent_ok, RedditEndpoint,
    RedditState, DEFAULT_USERNAME,
};
use crate::oauth::{
    constant_time_eq, parse_basic_auth, parse_redirect_uri, random_token, redirect_with,
};
use crate::twin::Twin as _;

/// Scopes Reddit knows.
const KNOWN_SCOPES: &[&str] = &[
    "*",
    "identity",
    "edit",
    "flair",
    "history",
    "modconfig",
    "modflair",
    "modlog",
    "modposts",
    "modwiki",
    "mysubreddits",
    "privatemessages",
    "read",
    "report",
    "save",
    "submit",
    "subscribe",
    "vote",
    "wikiedit",
    "wikiread",
];
/// Authorization codes live ten minutes (`r2/models/token.py`).
const CODE_LIFETIME: Duration = Duration::from_secs(600);

fn valid_username(u: &str) -> bool {
    (3..=20).contains(&u.len())
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `GET /api/v1/authorize`: validates, auto-approves (or declines with `sandbox_deny=1`),
/// redirects with `code` and `state`. `sandbox_user=<name>` acts as another user.
pub(crate) async fn authorize(state: web::Data<RedditState>, req: HttpRequest) -> HttpResponse {
    let q = params(&req, &[]);
    // Until client and redirect URI are trusted, errors are shown, not redirected.
    if param(&q, "client_id") != Some(state.config.client_id.as_str()) {
        return HttpResponse::BadRequest().body("invalid client id");
    }
    let Some(redirect) = param(&q, "redirect_uri").and_then(parse_redirect_uri) else {
        return HttpResponse::BadRequest().body("invalid redirect_uri parameter");
    };
    let client_state = param(&q, "state").unwrap_or_default();
    let fail = |error: &str| {
        let mut p = vec![("error", error)];
        if !client_state.is_empty() {
            p.push(("state", client_state));
        }
        HttpResponse::Found()
            .insert_header((LOCATION, redirect_with(&redirect, &p)))
            .finish()
    };
    let response_type = param(&q, "response_type").unwrap_or_default();
    if response_type != "code" {
        return fail("unsupported_response_type");
    }
    if client_state.is_empty() {
        return fail("invalid_request");
    }
    let permanent = match param(&q, "duration").unwrap_or("temporary") {
        "permanent" => true,
        "temporary" => false,
        _ => return fail("invalid_request"),
    };
    let scopes: Vec<String> = param(&q, "scope")
        .unwrap_or_default()
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if scopes.is_empty() || scopes.iter().any(|s| !KNOWN_SCOPES.contains(&s.as_str())) {
        return fail("invalid_scope");
    }
    if param(&q, "sandbox_deny") == Some("1") {
        return fail("access_denied");
    }
    let username = param(&q, "sandbox_user").unwrap_or(DEFAULT_USERNAME);
    if !valid_username(username) {
        return fail("invalid_request");
    }
    let code = random_token(24);
    {
        let mut inner = state.lock();
        inner.user(username);
        inner.codes.insert(
            code.clone(),
            AuthCode {
                // Compared verbatim at the token endpoint: it "must exactly match".
                redirect_uri: param(&q, "redirect_uri").unwrap_or_default().to_owned(),
                username: username.to_owned(),
                scopes,
                permanent,
                expires_at: Instant::now() + CODE_LIFETIME,
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

fn oauth_error(error: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({ "error": error }))
}

/// HTTP Basic with the registered client id and secret, as Reddit requires.
fn client_ok(state: &RedditState, req: &HttpRequest) -> bool {
    req.headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(parse_basic_auth)
        .is_some_and(|(id, secret)| {
            id == state.config.client_id
                && constant_time_eq(secret.as_bytes(), state.config.client_secret.as_bytes())
        })
}

/// `POST /api/v1/access_token`: `authorization_code` and `refresh_token` grants.
pub(crate) async fn access_token(
    state: web::Data<RedditState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    if let Err(resp) = user_agent_ok(&state, &req) {
        return resp;
    }
    if let Some(fault) = state.take_fault(RedditEndpoint::Token) {
        if let Some(resp) = blocking_fault_response(&fault).await {
            return resp;
        }
    }
    if !client_ok(&state, &req) {
        return reddit_error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let p = params(&req, &body);
    let lifetime = state.config.access_token_lifetime.as_secs();
    match param(&p, "grant_type") {
        Some("authorization_code") => {
            let code = param(&p, "code").unwrap_or_default();
            let redirect_uri = param(&p, "redirect_uri").unwrap_or_default();
            let grant = state.lock().codes.remove(code);
            // The redirect URI must match exactly; codes are single-use.
            let Some(grant) =
                grant.filter(|g| Instant::now() <= g.expires_at && g.redirect_uri == redirect_uri)
            else {
                return oauth_error("invalid_grant");
            };
            let (access, refresh) =
                state.issue(&grant.username, grant.scopes.clone(), grant.permanent);
            let mut body = json!({
                "access_token": access,
                "token_type": "bearer",
                "expires_in": lifetime,
                "scope": grant.scopes.join(" "),
            });
            if let Some(refresh) = refresh {
                body["refresh_token"] = json!(refresh);
            }
            HttpResponse::Ok().json(body)
        }
        Some("refresh_token") => {
            let token = param(&p, "refresh_token").unwrap_or_default();
            match state.refresh(token) {
                // Only a new access token: the refresh token stays as it is.
                Some((access, scopes)) => HttpResponse::Ok().json(json!({
                    "access_token": access,
                    "token_type": "bearer",
                    "expires_in": lifetime,
                    "scope": scopes.join(" "),
                })),
                None => oauth_error("invalid_grant"),
            }
        }
        _ => oauth_error("unsupported_grant_type"),
    }
}

/// `POST /api/v1/revoke_token` (`token`, `token_type_hint`): 204 whether or not it existed.
pub(crate) async fn revoke(
    state: web::Data<RedditState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    if let Err(resp) = user_agent_ok(&state, &req) {
        return resp;
    }
    if let Some(fault) = state.take_fault(RedditEndpoint::Revoke) {
        if let Some(resp) = blocking_fault_response(&fault).await {
            return resp;
        }
    }
    if !client_ok(&state, &req) {
        return reddit_error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let p = params(&req, &body);
    if let Some(token) = param(&p, "token") {
        state.revoke_token(token);
    }
    HttpResponse::NoContent().finish()
}
