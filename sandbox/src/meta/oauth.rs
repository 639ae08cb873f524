//! Facebook Login (platform-facts §3.1): the dialog, the code exchange and `fb_exchange_token`.

use std::time::{Duration, Instant};

use actix_web::http::header::LOCATION;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::graph::{
    self, bad_client_secret, graph_error, invalid_parameter, param, params, Throttle,
};
use super::state::{AuthCode, TokenKind};
use super::{invalid_token, MetaEndpoint, MetaState, DEFAULT_USERNAME};
use crate::oauth::{constant_time_eq, parse_redirect_uri, random_token, redirect_with};
use crate::twin::Twin as _;

/// Permissions the twin knows; anything else is an invalid scope.
const KNOWN_SCOPES: &[&str] = &[
    "public_profile",
    "email",
    "pages_show_list",
    "pages_read_engagement",
    "pages_manage_posts",
    "pages_manage_engagement",
    "pages_read_user_engagement",
    "pages_manage_metadata",
    "publish_video",
    "business_management",
    "instagram_basic",
    "instagram_content_publish",
    "instagram_manage_comments",
    "instagram_manage_insights",
];
/// Authorization codes are short-lived.
const CODE_LIFETIME: Duration = Duration::from_secs(600);

fn dialog_error(message: &str) -> HttpResponse {
    // Until the app and the redirect URI are trusted, the dialog shows an error page.
    HttpResponse::BadRequest()
        .content_type("text/plain; charset=utf-8")
        .body(format!("Facebook Login error: {message}"))
}

/// A 302 back to the client with `p` and the client's `state`.
fn redirect_back<'a>(
    redirect: &url::Url,
    client_state: &'a str,
    mut p: Vec<(&'a str, &'a str)>,
) -> HttpResponse {
    if !client_state.is_empty() {
        p.push(("state", client_state));
    }
    HttpResponse::Found()
        .insert_header((LOCATION, redirect_with(redirect, &p)))
        .finish()
}

fn valid_username(u: &str) -> bool {
    (1..=50).contains(&u.len())
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// `GET /{v}/dialog/oauth`: validates, auto-approves and redirects with `code` and `state`.
///
/// Sandbox-only parameters: `sandbox_user` (who logs in), `sandbox_decline` (comma-separated
/// permissions the user unticks) and `sandbox_deny=1` (the user cancels).
pub(crate) async fn dialog(state: web::Data<MetaState>, req: HttpRequest) -> HttpResponse {
    let q = params(&req, &[]);
    if param(&q, "client_id") != Some(state.config.client_id.as_str()) {
        return dialog_error("Invalid App ID");
    }
    let Some(redirect) = param(&q, "redirect_uri").and_then(parse_redirect_uri) else {
        return dialog_error("URL blocked: the redirect_uri is not a valid absolute URL");
    };
    let client_state = param(&q, "state").unwrap_or_default();
    let redirect_to = |p: Vec<(&str, &str)>| redirect_back(&redirect, client_state, p);
    if param(&q, "response_type").is_some_and(|t| t != "code") {
        return dialog_error("response_type must be code for the server-side flow");
    }
    let requested: Vec<String> = param(&q, "scope")
        .unwrap_or_default()
        .split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(bad) = requested
        .iter()
        .find(|s| !KNOWN_SCOPES.contains(&s.as_str()))
    {
        return dialog_error(&format!("Invalid Scopes: {bad}"));
    }
    if param(&q, "sandbox_deny") == Some("1") {
        return redirect_to(vec![
            ("error", "access_denied"),
            ("error_code", "200"),
            ("error_description", "Permissions error"),
            ("error_reason", "user_denied"),
        ]);
    }
    let username = param(&q, "sandbox_user").unwrap_or(DEFAULT_USERNAME);
    if !valid_username(username) {
        return dialog_error("sandbox_user must be 1-50 characters of [A-Za-z0-9_.]");
    }
    let declined: Vec<&str> = param(&q, "sandbox_decline")
        .unwrap_or_default()
        .split(',')
        .collect();
    let (declined, mut scopes): (Vec<String>, Vec<String>) = requested
        .into_iter()
        .partition(|s| declined.contains(&s.as_str()));
    if !scopes.iter().any(|s| s == "public_profile") {
        scopes.push("public_profile".into());
    }
    let code = random_token(32);
    {
        let mut inner = state.lock();
        let user = inner.user_for_login(username);
        inner.record_consent(&user.id, &scopes, &declined);
        inner.codes.insert(
            code.clone(),
            AuthCode {
                redirect_uri: redirect.to_string(),
                user_id: user.id,
                expires_at: Instant::now() + CODE_LIFETIME,
            },
        );
    }
    redirect_to(vec![("code", code.as_str())])
}

/// A token-endpoint fault, if one is queued and blocks the call.
async fn token_fault(state: &MetaState) -> Option<HttpResponse> {
    let fault = state.take_fault(MetaEndpoint::Token)?;
    let throttle = Throttle {
        status: StatusCode::BAD_REQUEST,
        code: 4,
        message: "(#4) Application request limit reached",
        buc: None,
    };
    graph::blocking_fault_response(&fault, throttle, (368, None)).await
}

fn token_body(token: &str, lifetime: Duration) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "access_token": token, "token_type": "bearer", "expires_in": lifetime.as_secs(),
    }))
}

/// `GET|POST /{v}/oauth/access_token`: a code (with `redirect_uri`) → a short-lived user
/// token; `grant_type=fb_exchange_token` → a long-lived one.
pub(crate) async fn access_token(
    state: web::Data<MetaState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(resp) = token_fault(&state).await {
        return resp;
    }
    let p = params(&req, &body);
    if param(&p, "client_id") != Some(state.config.client_id.as_str()) {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "Error validating application. Invalid application ID.",
            "OAuthException",
            101,
            None,
        );
    }
    let secret_ok = param(&p, "client_secret")
        .is_some_and(|s| constant_time_eq(s.as_bytes(), state.config.client_secret.as_bytes()));
    if !secret_ok {
        return bad_client_secret();
    }
    match param(&p, "grant_type") {
        Some("fb_exchange_token") => exchange(&state, param(&p, "fb_exchange_token")),
        None | Some("authorization_code") => code_exchange(
            &state,
            param(&p, "code").unwrap_or_default(),
            param(&p, "redirect_uri").unwrap_or_default(),
        ),
        Some(other) => invalid_parameter(&format!("Unsupported grant_type {other}"), None),
    }
}

fn code_exchange(state: &MetaState, code: &str, redirect_uri: &str) -> HttpResponse {
    let mut inner = state.lock();
    // Codes are single-use: removed whether or not the rest matches.
    let Some(grant) = inner.codes.remove(code) else {
        return invalid_parameter(
            "This authorization code has been used or is invalid.",
            Some(36009),
        );
    };
    let redirect_matches =
        parse_redirect_uri(redirect_uri).is_some_and(|u| u.as_str() == grant.redirect_uri);
    if !redirect_matches {
        return invalid_parameter("Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request", Some(36008));
    }
    if Instant::now() > grant.expires_at {
        return invalid_parameter("This authorization code has expired.", Some(36007));
    }
    let lifetime = state.config.short_lived_lifetime;
    let token = inner.issue_token(TokenKind::ShortUser, &grant.user_id, None, Some(lifetime));
    token_body(&token, lifetime)
}

/// A valid user token (short- or long-lived) → a fresh long-lived one. An expired token cannot
/// be exchanged (facts §3.1). Exchanging a still-valid long-lived token extends the grant.
fn exchange(state: &MetaState, token: Option<&str>) -> HttpResponse {
    let Some(token) = token else {
        return invalid_parameter("The parameter fb_exchange_token is required", None);
    };
    let caller = match state.authenticate(token) {
        Ok(caller) => caller,
        Err(subcode) => return invalid_token(subcode),
    };
    if caller.kind == TokenKind::Page {
        return invalid_parameter(
            "fb_exchange_token must be a user access token; Page tokens come from /me/accounts",
            None,
        );
    }
    let lifetime = state.config.long_lived_lifetime;
    let fresh =
        state
            .lock()
            .issue_token(TokenKind::LongUser, &caller.user_id, None, Some(lifetime));
    token_body(&fresh, lifetime)
}
