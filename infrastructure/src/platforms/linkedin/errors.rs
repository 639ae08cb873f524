//! LinkedIn's Rest.li error bodies and how each failure is classified (platform-facts §8;
//! ARCHITECTURE invariant 7).
//!
//! Bodies look like `{"status": 401, "serviceErrorCode": 65602, "code": "EXPIRED_ACCESS_TOKEN",
//! "message": "..."}`; validation errors put `ERROR :: /path :: reason` lines in `message`;
//! a duplicate post names the existing URN and has `errorDetails.inputErrors[].code =
//! "DUPLICATE_POST"`. 429s carry no headers: a message naming a `DAY` limit means the budget is
//! back at midnight UTC, anything else gets the configured back-off.
use std::time::Duration;

use chrono::{DateTime, NaiveTime, TimeDelta, Utc};
use herald_domain::{ErrorClass, PlatformFailure};
use serde::Deserialize;

use crate::platforms::PostError;
use crate::text::truncate;

/// What the failed call was doing.
#[derive(Debug, Clone, Copy)]
pub struct CallContext {
    /// Completes "could not ...", e.g. "create the post".
    pub action: &'static str,
}

impl CallContext {
    pub const READ_ACCOUNT: Self = Self::new("read the member's profile");
    pub const READ_ORGANIZATIONS: Self = Self::new("list the organisations the member manages");
    pub const INIT_IMAGE: Self = Self::new("start the image upload");
    pub const INIT_VIDEO: Self = Self::new("start the video upload");
    pub const INIT_DOCUMENT: Self = Self::new("start the document upload");
    pub const UPLOAD: Self = Self::new("upload the media");
    pub const FINALIZE_VIDEO: Self = Self::new("finish the video upload");
    pub const MEDIA_STATUS: Self = Self::new("check the media's processing status");
    pub const CREATE_POST: Self = Self::new("create the post");
    pub const READ_POSTS: Self = Self::new("list the author's posts");

    const fn new(action: &'static str) -> Self {
        Self { action }
    }
}

/// A Rest.li error body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RestliError {
    pub message: Option<String>,
    pub service_error_code: Option<i64>,
    pub code: Option<String>,
    #[serde(default)]
    pub error_details: ErrorDetails,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ErrorDetails {
    #[serde(default)]
    pub input_errors: Vec<InputError>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct InputError {
    pub code: Option<String>,
}

impl RestliError {
    pub fn parse(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }

    fn explanation(&self) -> Option<String> {
        self.message
            .as_deref()
            .map(|m| m.trim().replace('\n', "; "))
            .map(|m| m.trim_end_matches("; ").to_owned())
            .filter(|m| !m.is_empty())
            .map(|m| truncate(&m, 400))
    }

    fn is_duplicate(&self) -> bool {
        self.error_details
            .input_errors
            .iter()
            .any(|e| e.code.as_deref() == Some("DUPLICATE_POST"))
            || self
                .message
                .as_deref()
                .is_some_and(|m| m.contains("Content is a duplicate of"))
    }
}

/// The next midnight UTC after `now`, when LinkedIn's daily limits reset.
pub(crate) fn next_midnight_utc(now: DateTime<Utc>) -> DateTime<Utc> {
    let tomorrow = now.date_naive() + TimeDelta::days(1);
    tomorrow.and_time(NaiveTime::MIN).and_utc()
}

/// Whether a rate-limit failure is LinkedIn's application-wide daily limit ("Resource level
/// throttle APPLICATION DAY limit ..."), which the failure's message quotes, rather than the
/// member's.
pub(crate) fn is_application_limit(failure: &PlatformFailure) -> bool {
    failure.class == ErrorClass::RateLimited && failure.message.contains("APPLICATION DAY")
}

/// Classifies a LinkedIn API error response. `backoff` is the wait after a 429 that names no
/// daily limit; `version` is the `LinkedIn-Version` that was sent.
pub(crate) fn classify(
    status: u16,
    body: &[u8],
    ctx: CallContext,
    now: DateTime<Utc>,
    backoff: Duration,
    version: &str,
) -> PlatformFailure {
    let parsed = RestliError::parse(body);
    let said = parsed
        .explanation()
        .map(|e| format!(": {e}"))
        .unwrap_or_default();
    let action = ctx.action;
    let code = match (&parsed.code, parsed.service_error_code) {
        (Some(c), _) => c.to_ascii_lowercase(),
        (None, Some(n)) => format!("service_{n}"),
        _ => format!("http_{status}"),
    };

    if status == 429 {
        let daily = parsed.message.as_deref().is_some_and(|m| m.contains("DAY"));
        return if daily {
            let reset = next_midnight_utc(now);
            PlatformFailure::new(
                ErrorClass::RateLimited,
                code,
                format!("LinkedIn's daily limit for this call is used up{said}; LinkedIn resets it at midnight UTC, so Herald tries to {action} again after {}", reset.to_rfc3339()),
            )
            .not_before(reset)
        } else {
            let until = now + TimeDelta::from_std(backoff).unwrap_or(TimeDelta::seconds(60));
            PlatformFailure::new(
                ErrorClass::RateLimited,
                code,
                format!("LinkedIn is throttling requests{said}; it says not for how long, so Herald waits {} s before trying to {action} again", backoff.as_secs()),
            )
            .not_before(until)
        };
    }
    if status >= 500 {
        return PlatformFailure::new(
            ErrorClass::Retryable,
            code,
            format!("LinkedIn failed to {action} (HTTP {status}){said}; Herald will try again"),
        );
    }
    match (status, parsed.code.as_deref()) {
        (401, _) => {
            let why = match parsed.service_error_code {
                Some(65602) => "it expired (LinkedIn access tokens last 60 days)",
                Some(65601) => "the member revoked Herald's access",
                _ => "LinkedIn does not recognise it",
            };
            PlatformFailure::new(
                ErrorClass::Auth,
                code,
                format!("LinkedIn refused the access token to {action}: {why}; Herald refreshes it where LinkedIn issued a refresh token, otherwise reconnect the account"),
            )
        }
        (426, _) | (_, Some("NONEXISTENT_VERSION" | "VERSION_MISSING")) => PlatformFailure::new(
            ErrorClass::Permanent,
            code,
            format!("LinkedIn no longer serves API version {version}{said}; set LINKEDIN_VERSION to a current version (YYYYMM, see LinkedIn's versioning page)"),
        ),
        (403, _) => PlatformFailure::new(
            ErrorClass::Permanent,
            code,
            format!("LinkedIn did not allow Herald to {action}{said}. Posting as a member needs the w_member_social permission; posting for an organisation needs w_organization_social and the ADMINISTRATOR or CONTENT_ADMINISTRATOR role on its page: reconnect granting these, or ask a page admin for the role"),
        ),
        (422, _) if parsed.is_duplicate() => PlatformFailure::new(
            ErrorClass::Permanent,
            herald_domain::failure::DUPLICATE_POST,
            format!("LinkedIn refused the post as a duplicate of an existing one{said}; change the text to post it again"),
        ),
        (422 | 400, _) => PlatformFailure::new(
            ErrorClass::Permanent,
            code,
            format!("LinkedIn refused to {action}{said}; change the post and try again"),
        ),
        (404, _) => PlatformFailure::new(
            ErrorClass::Permanent,
            code,
            format!("LinkedIn could not find what Herald asked for to {action}{said}; check the LinkedIn API base URL, or upload the media again"),
        ),
        _ => PlatformFailure::new(
            ErrorClass::Permanent,
            code,
            format!("LinkedIn refused to {action} with HTTP {status}{said}"),
        ),
    }
}

/// A request that got no response.
pub(crate) fn transport_failure(error: &reqwest::Error, ctx: CallContext) -> PlatformFailure {
    crate::platforms::http::default_transport_failure("LinkedIn", ctx.action, error)
}

/// `POST /rest/posts` failed in transit. Only a connection never established proves nothing
/// was posted; after that, the post may exist.
pub(crate) fn publish_transport_error(error: &reqwest::Error) -> PostError {
    if error.is_builder() || error.is_connect() {
        return PostError::Failed(transport_failure(error, CallContext::CREATE_POST));
    }
    let what = if error.is_timeout() {
        "timed out"
    } else {
        "lost its connection"
    };
    PostError::OutcomeUnknown(format!(
        "the request to create the post {what} after it was sent; the post may exist on LinkedIn"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T15:30:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn classify_json(status: u16, body: serde_json::Value) -> PlatformFailure {
        classify(
            status,
            body.to_string().as_bytes(),
            CallContext::CREATE_POST,
            now(),
            Duration::from_secs(90),
            "202610",
        )
    }

    #[test]
    fn daily_limits_wait_until_midnight_utc_and_throttles_use_the_backoff() {
        let day = classify_json(
            429,
            serde_json::json!({"status": 429, "serviceErrorCode": 101, "code": "TOO_MANY_REQUESTS",
                "message": "Resource level throttle APPLICATION DAY limit for calls to this resource is reached."}),
        );
        assert_eq!(day.class, ErrorClass::RateLimited);
        assert_eq!(
            day.not_before.unwrap().to_rfc3339(),
            "2026-11-23T00:00:00+00:00"
        );
        let short = classify_json(429, serde_json::json!({"message": "Too Many Requests"}));
        assert_eq!(short.not_before, Some(now() + TimeDelta::seconds(90)));
    }

    #[test]
    fn every_documented_refusal_has_its_class() {
        let expired = classify_json(
            401,
            serde_json::json!({"status":401,"serviceErrorCode":65602,"code":"EXPIRED_ACCESS_TOKEN","message":"The token used in the request has expired"}),
        );
        assert_eq!(expired.class, ErrorClass::Auth);
        assert!(expired.message.contains("60 days"));
        let version = classify_json(
            426,
            serde_json::json!({"status":426,"code":"NONEXISTENT_VERSION","message":"Requested version 20230101 is not active"}),
        );
        assert_eq!(version.class, ErrorClass::Permanent);
        assert!(version.message.contains("LINKEDIN_VERSION"));
        let dup = classify_json(
            422,
            serde_json::json!({"message":"...: Content is a duplicate of urn:li:share:1","errorDetails":{"inputErrors":[{"code":"DUPLICATE_POST"}]},"status":422}),
        );
        assert_eq!(dup.code, herald_domain::failure::DUPLICATE_POST);
        let denied = classify_json(
            403,
            serde_json::json!({"status":403,"serviceErrorCode":100,"code":"ACCESS_DENIED","message":"Not enough permissions"}),
        );
        assert_eq!(denied.class, ErrorClass::Permanent);
        assert!(denied.message.contains("w_organization_social"));
        assert_eq!(
            classify_json(504, serde_json::json!({})).class,
            ErrorClass::Retryable
        );
        let invalid = classify_json(
            422,
            serde_json::json!({"message":"ERROR :: /commentary :: too long\n","status":422}),
        );
        assert!(invalid.message.contains("/commentary :: too long"));
        assert!(!invalid.message.ends_with(';'));
    }
}
