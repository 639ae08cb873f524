//! RFC 9457 problem+json errors with a stable `type`, the only place errors become HTTP.
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use cqrs_es::AggregateError;
use herald_domain::connection::ConnectionError;
use herald_domain::publishing_job::PublishingJobError;
use serde::Serialize;

/// The body of an error response.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

/// An error the API returns. `kind` is the stable problem type (e.g. `content-invalid`).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub detail: String,
    /// Headers the response carries besides the problem (`Retry-After`, `RateLimit`, ...).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            detail: detail.into(),
            headers: Vec::new(),
        }
    }

    /// The same error, answered with `name: value` too.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn bad_request(kind: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, kind, detail)
    }

    pub fn unprocessable(kind: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, kind, detail)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no {what} with that id exists for this user"),
        )
    }

    /// RFC 6750: a 401 names the scheme the API takes.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
            .with_header("WWW-Authenticate", "Bearer realm=\"herald\"")
    }

    /// Infrastructure failure: logged in full, returned without internals.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Herald could not complete the request; try again, and report it if it persists",
        )
    }

    /// A per-user limit of this deployment is reached; `setting` is what raises it.
    pub fn limit_reached(detail: impl std::fmt::Display, setting: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "limit-reached",
            format!("{detail} (this deployment's {setting})"),
        )
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.kind, self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let problem = Problem {
            kind: self.kind.to_string(),
            title: self
                .status
                .canonical_reason()
                .unwrap_or("Error")
                .to_string(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
        };
        let mut response = HttpResponse::build(self.status);
        for (name, value) in &self.headers {
            response.insert_header((*name, value.as_str()));
        }
        response
            .content_type("application/problem+json")
            .json(problem)
    }
}

impl From<PublishingJobError> for ApiError {
    fn from(error: PublishingJobError) -> Self {
        use PublishingJobError as E;
        let detail = error.to_string();
        match error {
            E::Content(_) => Self::unprocessable("content-invalid", detail),
            E::NotFound => Self::not_found("job"),
            E::IdConflict => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                detail,
            ),
            E::ScheduledInPast { .. } | E::InvalidRetryBudget(_) => {
                Self::bad_request("validation-error", detail)
            }
            E::ManualRetriesExhausted { .. } => {
                Self::new(StatusCode::CONFLICT, "limit-reached", detail)
            }
            E::InvalidState { .. } | E::ReconcileFirst | E::NotDueYet { .. } => {
                Self::new(StatusCode::CONFLICT, "invalid-state", detail)
            }
            E::StaleAttempt(_)
            | E::RetryBudgetExhausted { .. }
            | E::UnexpectedPart { .. }
            | E::UnknownMedia(_) => Self::new(StatusCode::CONFLICT, "invalid-state", detail),
        }
    }
}

impl From<ConnectionError> for ApiError {
    fn from(error: ConnectionError) -> Self {
        let detail = error.to_string();
        match error {
            ConnectionError::NotFound | ConnectionError::AccountMismatch(_) => {
                Self::not_found("connection")
            }
            ConnectionError::Disconnected
            | ConnectionError::ReauthorizationRequired
            | ConnectionError::NotRefreshable => {
                Self::new(StatusCode::CONFLICT, "token-expired", detail)
            }
            ConnectionError::LoginNotEnded(_) => {
                Self::new(StatusCode::CONFLICT, "invalid-state", detail)
            }
        }
    }
}

impl<E: std::error::Error + Into<ApiError>> From<AggregateError<E>> for ApiError {
    fn from(error: AggregateError<E>) -> Self {
        match error {
            AggregateError::UserError(error) => error.into(),
            AggregateError::AggregateConflict => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                "the resource kept changing while the request ran; try again",
            ),
            other => Self::internal(other),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        Self::internal(format!("{error:#}"))
    }
}
