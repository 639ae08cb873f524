//! How a platform call failed, classified so retries are deliberate (ARCHITECTURE invariant 7).
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The class of a failure decides what happens next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// 5xx, timeouts, network: back off and try again.
    Retryable,
    /// 429 or a rate-limit/quota window: wait until the platform says so.
    RateLimited,
    /// 401: refresh the token once, then try again.
    Auth,
    /// The grant is revoked or refresh failed for good: the user must reconnect.
    ReauthorizationRequired,
    /// Content, format or permission problem: retrying cannot help.
    Permanent,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::Auth => "auth",
            ErrorClass::ReauthorizationRequired => "reauthorization_required",
            ErrorClass::Permanent => "permanent",
        }
    }
}

/// A classified failure of a platform call. Carries no secrets: adapters build the message from
/// the platform's error body, never from request headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformFailure {
    pub class: ErrorClass,
    /// The platform's own code (HTTP status, error code or problem type).
    pub code: String,
    /// What went wrong and what the user can do about it.
    pub message: String,
    /// The earliest time the platform allows another call (Retry-After, rate-limit reset).
    pub not_before: Option<DateTime<Utc>>,
}

/// The code every adapter gives a post the platform refused as a duplicate of an existing one
/// (the publisher then reconciles after an ambiguous failure instead of failing the job).
pub const DUPLICATE_POST: &str = "duplicate_post";
/// What `DUPLICATE_POST` was called before it was platform-neutral; failures recorded in stored
/// events may still carry it.
const LEGACY_DUPLICATE_POST: &str = "http_403_duplicate";

impl PlatformFailure {
    /// Whether the platform refused the post as a duplicate (under either code name).
    pub fn is_duplicate_post(&self) -> bool {
        self.code == DUPLICATE_POST || self.code == LEGACY_DUPLICATE_POST
    }

    pub fn new(class: ErrorClass, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            class,
            code: code.into(),
            message: message.into(),
            not_before: None,
        }
    }

    pub fn not_before(mut self, at: DateTime<Utc>) -> Self {
        self.not_before = Some(at);
        self
    }
}

impl std::fmt::Display for PlatformFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.class.as_str(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for PlatformFailure {}

#[cfg(test)]
mod duplicate_tests {
    use super::*;

    #[test]
    fn a_duplicate_is_recognised_under_its_old_x_named_code_too() {
        let failure = |code| PlatformFailure::new(ErrorClass::Permanent, code, "dup");
        assert!(failure(DUPLICATE_POST).is_duplicate_post());
        // Failures recorded in stored events before the rename.
        assert!(failure("http_403_duplicate").is_duplicate_post());
        assert!(!failure("http_403").is_duplicate_post());
    }
}
