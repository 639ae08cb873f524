//! X's error bodies: RFC 7807 problems for the API, OAuth errors for `/2/oauth2/*`.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde_json::{json, Value};

/// Content type X uses for problem bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

const INVALID_REQUEST: &str = "https://api.x.com/2/problems/invalid-request";

/// An X API problem (`{"title","detail","type","status"}`).
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// HTTP status, repeated in the body.
    pub status: StatusCode,
    /// Short human title.
    pub title: String,
    /// Problem type URI (or `about:blank`).
    pub type_: String,
    /// Human detail.
    pub detail: String,
}

impl Problem {
    fn new(status: StatusCode, title: &str, type_: &str, detail: impl Into<String>) -> Self {
        Self {
            status,
            title: title.to_owned(),
            type_: type_.to_owned(),
            detail: detail.into(),
        }
    }

    /// 400 `invalid-request` with a specific detail.
    pub fn invalid_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "Invalid Request",
            INVALID_REQUEST,
            detail,
        )
    }

    /// 401 as X sends it for a missing, expired or revoked token.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "about:blank",
            "Unauthorized",
        )
    }

    /// 403 `about:blank` with a specific detail (duplicates, policy refusals, scopes).
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", "about:blank", detail)
    }

    /// 429 as X sends it when a rate-limit window is exhausted.
    pub fn too_many_requests() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too Many Requests",
            "about:blank",
            "Too Many Requests",
        )
    }

    /// A 5xx problem for injected server errors.
    pub fn server_error(status: StatusCode) -> Self {
        let title = status.canonical_reason().unwrap_or("Server Error");
        Self::new(
            status,
            title,
            "https://api.x.com/2/problems/internal-error",
            title,
        )
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({
            "title": self.title,
            "detail": self.detail,
            "type": self.type_,
            "status": self.status.as_u16(),
        })
    }

    /// The HTTP response with `application/problem+json`.
    pub fn response(&self) -> HttpResponse {
        HttpResponse::build(self.status)
            .content_type(PROBLEM_JSON)
            .json(self.body())
    }
}

/// An OAuth token-endpoint error (`{"error","error_description"}`).
pub fn oauth_error(status: StatusCode, error: &str, description: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({
        "error": error,
        "error_description": description,
    }))
}
