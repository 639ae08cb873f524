//! What every Meta Graph API answer shares (platform-facts §3.2, §3.3): the error envelope, the
//! usage headers, what a call was doing when it failed, and failures in transit.
use chrono::{DateTime, TimeDelta, Utc};
use herald_domain::{ErrorClass, PlatformFailure};
use reqwest::header::HeaderMap;
use serde::Deserialize;

use crate::platforms::PostError;

/// Meta does not say when app-level usage recovers; its window is a rolling hour.
const APP_USAGE_WINDOW_MINUTES: i64 = 60;

/// What the failed call was doing; shapes the message and how a refused token is read.
#[derive(Debug, Clone, Copy)]
pub struct CallContext {
    /// Completes "could not ...", e.g. "publish the post".
    pub action: &'static str,
    pub kind: CallKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// An API call with an access token: 190 means refresh and retry.
    Api,
    /// Exchanging an authorization code (or the short-lived token it gave).
    Code,
    /// Refreshing the long-lived token: 190 means the user must reconnect.
    Refresh,
}

impl CallContext {
    pub const CODE: Self = Self {
        action: "exchange the authorization code",
        kind: CallKind::Code,
    };
    pub const REFRESH: Self = Self {
        action: "refresh the access token",
        kind: CallKind::Refresh,
    };

    /// An API call doing `action`.
    pub const fn api(action: &'static str) -> Self {
        Self {
            action,
            kind: CallKind::Api,
        }
    }
}

/// `{"error": {"message", "type", "code", "error_subcode", "error_user_msg", "fbtrace_id"}}`.
#[derive(Debug, Default, Deserialize)]
pub struct GraphErrorBody {
    #[serde(default)]
    pub error: GraphError,
}

#[derive(Debug, Default, Deserialize)]
pub struct GraphError {
    pub message: Option<String>,
    pub code: Option<i64>,
    pub error_subcode: Option<i64>,
    pub error_user_title: Option<String>,
    pub error_user_msg: Option<String>,
    #[serde(default)]
    pub is_transient: bool,
    /// Extra data some errors carry (the video upload's expected offsets).
    #[serde(default)]
    pub error_data: Option<serde_json::Value>,
}

impl GraphErrorBody {
    pub fn parse(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }

    /// Meta's own words: the message meant for users, else the developer message.
    pub fn explanation(&self) -> Option<String> {
        self.error
            .error_user_msg
            .clone()
            .or_else(|| self.error.message.clone())
            .filter(|s| !s.trim().is_empty())
            .map(|s| truncate(s.trim(), 400))
    }

    /// `graph_{code}_{subcode}`, `graph_{code}` or `http_{status}`: the failure's stable code.
    pub fn code_name(&self, status: u16) -> String {
        match (self.error.code, self.error.error_subcode) {
            (Some(c), Some(s)) => format!("graph_{c}_{s}"),
            (Some(c), None) => format!("graph_{c}"),
            _ => format!("http_{status}"),
        }
    }
}

/// Whether a JSON body is a Graph error envelope.
pub fn is_error_body(body: &serde_json::Value) -> bool {
    body.get("error").is_some()
}

/// `{"call_count","total_cputime","total_time"}` in percent.
#[derive(Debug, Default, Deserialize)]
struct AppUsage {
    #[serde(default)]
    call_count: u64,
    #[serde(default)]
    total_cputime: u64,
    #[serde(default)]
    total_time: u64,
}

#[derive(Debug, Default, Deserialize)]
struct BucUsage {
    #[serde(default)]
    call_count: u64,
    #[serde(default)]
    total_cputime: u64,
    #[serde(default)]
    total_time: u64,
    #[serde(default)]
    estimated_time_to_regain_access: i64,
}

/// The budget Meta's usage headers report: `(percent left, when it is back)`. `X-App-Usage`
/// gives the app's usage in percent; `X-Business-Use-Case-Usage` the account's, with the wait
/// in minutes. The highest usage wins.
pub fn usage(headers: &HeaderMap, now: DateTime<Utc>) -> Option<(u64, DateTime<Utc>)> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let mut used: Option<u64> = None;
    let mut wait_minutes = 0i64;
    if let Some(app) = header("x-app-usage").and_then(|v| serde_json::from_str::<AppUsage>(v).ok())
    {
        used = Some(app.call_count.max(app.total_cputime).max(app.total_time));
        if used.is_some_and(|u| u >= 100) {
            wait_minutes = APP_USAGE_WINDOW_MINUTES;
        }
    }
    if let Some(buc) = header("x-business-use-case-usage").and_then(|v| {
        serde_json::from_str::<std::collections::HashMap<String, Vec<BucUsage>>>(v).ok()
    }) {
        for entry in buc.values().flatten() {
            let pct = entry
                .call_count
                .max(entry.total_cputime)
                .max(entry.total_time);
            used = Some(used.unwrap_or(0).max(pct));
            if entry.estimated_time_to_regain_access > 0 {
                wait_minutes = entry.estimated_time_to_regain_access;
            }
        }
    }
    let used = used?;
    Some((
        100u64.saturating_sub(used),
        now + TimeDelta::minutes(wait_minutes),
    ))
}

/// [`usage`] in the shape `PlatformApi::rate_limit` returns.
pub fn rate_limit(headers: &HeaderMap, now: DateTime<Utc>) -> (Option<u64>, Option<DateTime<Utc>>) {
    usage(headers, now).map_or((None, None), |(left, back_at)| (Some(left), Some(back_at)))
}

/// When a rate-limited call may be tried again, if the headers say.
pub fn not_before(headers: &HeaderMap, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    usage(headers, now)
        .filter(|(left, at)| *left == 0 && *at > now)
        .map(|(_, at)| at)
        .or_else(|| crate::oauth::retry_after(headers, now))
}

/// A request that failed in transit, for any call except the irreversible one: nothing
/// happened that cannot be repeated, so retry.
pub fn transport_failure(
    platform: &str,
    error: &reqwest::Error,
    ctx: CallContext,
) -> PlatformFailure {
    if error.is_builder() {
        return PlatformFailure::new(
            ErrorClass::Permanent,
            "invalid_request",
            format!(
                "Herald could not build the request to {}: check the {platform} API base URL",
                ctx.action
            ),
        );
    }
    PlatformFailure::new(
        ErrorClass::Retryable,
        "network",
        format!(
            "the request to {} {}; Herald will try again",
            ctx.action,
            transport_kind(platform, error)
        ),
    )
}

/// The irreversible call failed in transit. Only a connection never established proves nothing
/// was published; after that, the post may exist.
pub fn publish_transport_error(
    platform: &str,
    error: &reqwest::Error,
    ctx: CallContext,
) -> PostError {
    if error.is_builder() || error.is_connect() {
        return PostError::Failed(transport_failure(platform, error, ctx));
    }
    PostError::OutcomeUnknown(format!(
        "the request to {} {} after it was sent; the post may exist on {platform}",
        ctx.action,
        transport_kind(platform, error)
    ))
}

fn transport_kind(platform: &str, error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        format!("could not connect to {platform}")
    } else {
        "lost its connection".into()
    }
}

/// `text` cut to `max_chars` characters, with an ellipsis when cut.
pub fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Whitespace-insensitive text, for matching a post the platform may have re-spaced.
pub fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn usage_headers_give_the_budget_and_the_wait() {
        let h = headers(&[
            (
                "x-app-usage",
                r#"{"call_count":100,"total_cputime":3,"total_time":4}"#,
            ),
            (
                "x-business-use-case-usage",
                r#"{"123":[{"type":"pages","call_count":100,"total_cputime":1,"total_time":1,"estimated_time_to_regain_access":7}]}"#,
            ),
        ]);
        assert_eq!(usage(&h, now()), Some((0, now() + TimeDelta::minutes(7))));
        assert_eq!(not_before(&h, now()), Some(now() + TimeDelta::minutes(7)));
        let relaxed = headers(&[(
            "x-app-usage",
            r#"{"call_count":28,"total_cputime":25,"total_time":25}"#,
        )]);
        assert_eq!(usage(&relaxed, now()), Some((72, now())));
        assert_eq!(not_before(&relaxed, now()), None);
        assert_eq!(usage(&HeaderMap::new(), now()), None);
    }

    #[test]
    fn error_bodies_parse_and_name_their_code() {
        let body = GraphErrorBody::parse(
            br#"{"error":{"message":"m","code":6000,"error_subcode":1363037,"error_user_msg":"Try again","error_data":{"start_offset":5}}}"#,
        );
        assert_eq!(body.code_name(400), "graph_6000_1363037");
        assert_eq!(body.explanation().as_deref(), Some("Try again"));
        assert_eq!(body.error.error_data.unwrap()["start_offset"], 5);
        assert_eq!(GraphErrorBody::parse(b"nope").code_name(502), "http_502");
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(normalize(" a \n b "), "a b");
    }
}
