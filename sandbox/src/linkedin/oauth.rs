//! LinkedIn's 3-legged OAuth (platform-facts §8.1) and `/v2/userinfo`.

use std::time::{Duration, Instant};

use actix_web::http::header::LOCATION;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::state::AuthCode;
use super::{
    blocking_fault_response, finish, guard, param, params, LinkedInEndpoint, LinkedInState,
    DEFAULT_USERNAME,
};
use crate::oauth::{constant_time_eq, parse_redirect_uri, random_token, redirect_with};
use crate::twin::Twin as _;

/// Scopes the twin knows (platform-facts §8.1 and the usual product scopes).
pub(crate) const KNOWN_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "email",
    "w_member_social",
    "r_member_social",
    "w_organization_social",
    "r_organization_social",
    "rw_organization_admin",
    "r_organization_admin",
];
/// LinkedIn authorization codes live 30 minutes.
const CODE_LIFETIME: Duration = Duration::from_secs(1800);

/// An OAuth error body: `{"error","error_description"}`.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": error, "error_description": description }))
}

fn valid_username(u: &str) -> bool {
    (1..=30).contains(&u.len())
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `GET /oauth/v2/authorization`: validates, auto-approves, redirects with `code` and `state`.
/// `sandbox_user=<name>` acts as another member.
pub(crate) async fn authorize(state: web::Data<LinkedInState>, req: HttpRequest) -> HttpResponse {
    let q = params(&req, &[]);
    // Until client and redirect URI are trusted, errors must not redirect.
    if param(&q, "client_id") != Some(state.config.client_id.as_str()) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client_id",
            "The passed in client_id is invalid",
        );
    }
    let Some(redirect) = param(&q, "redirect_uri").and_then(parse_redirect_uri) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_redirect_uri",
            "The redirect_uri does not match the registered value",
        );
    };
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
    // LinkedIn recommends state against CSRF; the twin insists, so a client that forgets it
    // is caught in tests.
    if client_state.is_empty() {
        return fail(
            "invalid_request",
            "A required parameter \"state\" is missing",
        );
    }
    // Space-separated (a `+` in the query is a space after decoding); commas tolerated.
    let scopes: Vec<String> = param(&q, "scope")
        .unwrap_or_default()
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if scopes.is_empty() {
        return fail("invalid_scope", "A required parameter \"scope\" is missing");
    }
    if let Some(bad) = scopes
        .iter()
        .find(|s| !state.config.authorized_scopes.contains(s))
    {
        return fail(
            "unauthorized_scope_error",
            &format!("Scope \"{bad}\" is not authorized for your application"),
        );
    }
    let username = param(&q, "sandbox_user").unwrap_or(DEFAULT_USERNAME);
    if !valid_username(username) {
        return fail(
            "invalid_request",
            "sandbox_user must be 1-30 characters of [A-Za-z0-9_-]",
        );
    }
    let code = random_token(48);
    {
        let mut inner = state.lock();
        let member = inner.member_by_username(username);
        inner.codes.insert(
            code.clone(),
            AuthCode {
                redirect_uri: redirect.to_string(),
                member_id: member.id,
                scopes,
                expires_at: Instant::now() + CODE_LIFETIME,
            },
        );
    }
    HttpResponse::Found()
        .insert_header((
            LOCATION,
            redirect_with(&redirect, &[("code", &code), ("state", client_state)]),
        ))
        .finish()
}

fn token_body(
    access: &str,
    lifetime: Duration,
    refresh: Option<(String, u64)>,
    scopes: &[String],
) -> serde_json::Value {
    let mut body = json!({
        "access_token": access,
        "expires_in": lifetime.as_secs(),
        // LinkedIn lists granted scopes comma-separated.
        "scope": scopes.join(","),
        "token_type": "Bearer",
    });
    if let Some((token, left)) = refresh {
        body["refresh_token"] = json!(token);
        body["refresh_token_expires_in"] = json!(left);
    }
    body
}

/// `POST /oauth/v2/accessToken`: `authorization_code` and `refresh_token` grants, with
/// `client_id` and `client_secret` in the form body.
pub(crate) async fn access_token(
    state: web::Data<LinkedInState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(fault) = state.take_fault(LinkedInEndpoint::Token) {
        if let Some(resp) = blocking_fault_response(&fault).await {
            return resp;
        }
    }
    let p = params(&req, &body);
    let Some(grant_type) = param(&p, "grant_type") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "A required parameter \"grant_type\" is missing",
        );
    };
    let Some(client_id) = param(&p, "client_id") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "A required parameter \"client_id\" is missing",
        );
    };
    let Some(secret) = param(&p, "client_secret") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "A required parameter \"client_secret\" is missing",
        );
    };
    let secret_ok = constant_time_eq(secret.as_bytes(), state.config.client_secret.as_bytes());
    if client_id != state.config.client_id || !secret_ok {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed",
        );
    }
    let lifetime = state.config.access_token_lifetime;
    match grant_type {
        "authorization_code" => {
            let code = param(&p, "code").unwrap_or_default();
            let redirect_uri = param(&p, "redirect_uri").unwrap_or_default();
            let grant = state.lock().codes.remove(code);
            let usable = grant.filter(|g| {
                Instant::now() <= g.expires_at
                    && parse_redirect_uri(redirect_uri)
                        .is_some_and(|u| u.as_str() == g.redirect_uri)
            });
            let Some(grant) = usable else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Unable to retrieve access token: appid/redirect uri/code verifier does not match authorization code. Or authorization code expired. Or external member binding exists",
                );
            };
            let (access, refresh, left) = state.issue(&grant.member_id, grant.scopes.clone(), None);
            let refresh = refresh.zip(left);
            HttpResponse::Ok().json(token_body(&access, lifetime, refresh, &grant.scopes))
        }
        "refresh_token" => {
            let token = param(&p, "refresh_token").unwrap_or_default().to_owned();
            let found = state.lock().refresh_tokens.get(&token).cloned();
            let Some(stored) = found else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "The provided refresh token is invalid",
                );
            };
            if stored.revoked {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The refresh token has been revoked",
                );
            }
            if Instant::now() >= stored.expires_at {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The refresh token has expired; the member must authorize the application again",
                );
            }
            // The same refresh token comes back with what is left of its fixed lifetime.
            let (access, refresh, left) =
                state.issue(&stored.member_id, stored.scopes.clone(), Some(token));
            HttpResponse::Ok().json(token_body(
                &access,
                lifetime,
                refresh.zip(left),
                &stored.scopes,
            ))
        }
        other => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("grant_type {other} is not supported"),
        ),
    }
}

/// `POST /oauth/v2/revoke` (`client_id`, `client_secret`, `token`): ends the member's grant.
pub(crate) async fn revoke(
    state: web::Data<LinkedInState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let p = params(&req, &body);
    let secret_ok = param(&p, "client_secret")
        .is_some_and(|s| constant_time_eq(s.as_bytes(), state.config.client_secret.as_bytes()));
    if param(&p, "client_id") != Some(state.config.client_id.as_str()) || !secret_ok {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed",
        );
    }
    let Some(token) = param(&p, "token") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "A required parameter \"token\" is missing",
        );
    };
    let member = {
        let inner = state.lock();
        inner
            .access_tokens
            .get(token)
            .map(|t| t.member_id.clone())
            .or_else(|| inner.refresh_tokens.get(token).map(|t| t.member_id.clone()))
    };
    if let Some(member) = member {
        state.revoke_member(&member);
    }
    HttpResponse::Ok().finish()
}

/// `GET /v2/userinfo` (OpenID Connect; needs `openid` and `profile`).
pub(crate) async fn userinfo(state: web::Data<LinkedInState>, req: HttpRequest) -> HttpResponse {
    let ctx = match guard(&state, &req, LinkedInEndpoint::Userinfo, false).await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    if !(ctx.caller.has("openid") && ctx.caller.has("profile")) {
        return super::access_denied("userinfo.GET.NO_VERSION");
    }
    let member = state.lock().members.get(&ctx.caller.member_id).cloned();
    let Some(member) = member else {
        return super::unauthorized(super::TokenProblem::Invalid);
    };
    let (given, family) = member
        .name
        .split_once(' ')
        .unwrap_or((member.name.as_str(), ""));
    let mut body = json!({
        "sub": member.id,
        "name": member.name,
        "given_name": given,
        "family_name": family,
        "picture": format!("https://media.licdn.com/dms/image/sandbox/{}", member.id),
        "locale": {"country": "US", "language": "en"},
    });
    if ctx.caller.has("email") {
        body["email"] = json!(format!("{}@sandbox.example", member.username));
        body["email_verified"] = json!(true);
    }
    finish(&ctx, HttpResponse::Ok().json(body)).await
}
