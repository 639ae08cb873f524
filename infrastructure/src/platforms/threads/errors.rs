//! Graph API error bodies and usage headers, and how each Threads failure is classified
//! (platform-facts §3.2, §3.3; ARCHITECTURE invariant 7).
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
    pub const READ_ACCOUNT: Self = Self::api("read the account");
    pub const CREATE_CONTAINER: Self = Self::api("create the post's media container");
    pub const CONTAINER_STATUS: Self = Self::api("check the media container's status");
    pub const PUBLISH: Self = Self::api("publish the post");
    pub const READ_POSTS: Self = Self::api("list the account's posts");
    pub const CODE: Self = Self {
        action: "exchange the authorization code",
        kind: CallKind::Code,
    };
    pub const REFRESH: Self = Self {
        action: "refresh the access token",
        kind: CallKind::Refresh,
    };

    const fn api(action: &'static str) -> Self {
        Self {
            action,
            kind: CallKind::Api,
        }
    }
}

/// `{"error": {"message", "type", "code", "error_subcode", "error_user_msg", "fbtrace_id"}}`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct GraphErrorBody {
    #[serde(default)]
    pub error: GraphError,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct GraphError {
    pub message: Option<String>,
    pub code: Option<i64>,
    pub error_subcode: Option<i64>,
    pub error_user_msg: Option<String>,
}

impl GraphErrorBody {
    pub fn parse(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }

    fn explanation(&self) -> Option<String> {
        self.error
            .error_user_msg
            .clone()
            .or_else(|| self.error.message.clone())
            .filter(|s| !s.trim().is_empty())
            .map(|s| truncate(s.trim(), 400))
    }
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
pub(crate) fn usage(headers: &HeaderMap, now: DateTime<Utc>) -> Option<(u64, DateTime<Utc>)> {
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

/// When a rate-limited call may be tried again, if the headers say.
fn not_before(headers: &HeaderMap, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    usage(headers, now)
        .filter(|(left, at)| *left == 0 && *at > now)
        .map(|(_, at)| at)
        .or_else(|| crate::oauth::retry_after(headers, now))
}

/// Classifies a Threads (Graph API) error response.
pub(crate) fn classify(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    ctx: CallContext,
    now: DateTime<Utc>,
) -> PlatformFailure {
    let parsed = GraphErrorBody::parse(body);
    let said = parsed
        .explanation()
        .map(|e| format!(": {e}"))
        .unwrap_or_default();
    let action = ctx.action;
    let code = parsed.error.code;
    let code_name = match (code, parsed.error.error_subcode) {
        (Some(c), Some(s)) => format!("graph_{c}_{s}"),
        (Some(c), None) => format!("graph_{c}"),
        _ => format!("http_{status}"),
    };
    let with_wait = |failure: PlatformFailure| match not_before(headers, now) {
        Some(at) => failure.not_before(at),
        None => failure,
    };

    if status == 429 || matches!(code, Some(4 | 17 | 32 | 613 | 80001 | 80002)) {
        return with_wait(PlatformFailure::new(
            ErrorClass::RateLimited,
            code_name,
            format!("Threads' rate limit or publishing quota (250 posts per 24 hours) is used up{said}; Herald waits before trying to {action} again"),
        ));
    }
    if status >= 500 || matches!(code, Some(1 | 2)) {
        return PlatformFailure::new(
            ErrorClass::Retryable,
            code_name,
            format!("Threads failed to {action} (HTTP {status}){said}; Herald will try again"),
        );
    }
    if code == Some(190) || status == 401 {
        return match ctx.kind {
            CallKind::Api => PlatformFailure::new(
                ErrorClass::Auth,
                code_name,
                format!("Threads did not accept the access token to {action} (expired or revoked); Herald refreshes it and tries again"),
            ),
            CallKind::Refresh => PlatformFailure::new(
                ErrorClass::ReauthorizationRequired,
                code_name,
                format!("Threads refused to refresh the access token{said}: it expired or the app's access was removed; reconnect the account"),
            ),
            CallKind::Code => PlatformFailure::new(
                ErrorClass::Permanent,
                code_name,
                format!("Threads refused the token it had just issued{said}; start connecting the account again"),
            ),
        };
    }
    if code == Some(101) {
        return PlatformFailure::new(
            ErrorClass::Permanent,
            code_name,
            format!("Threads refused Herald's app credentials{said}: check THREADS_CLIENT_ID and THREADS_CLIENT_SECRET against the app in Meta's developer portal"),
        );
    }
    if matches!(code, Some(10 | 200..=299)) || status == 403 {
        return PlatformFailure::new(
            ErrorClass::Permanent,
            code_name,
            format!("Threads refused to {action}{said}. Check that the account granted threads_basic and threads_content_publish (reconnect it if not) and that the post follows Threads' rules"),
        );
    }
    let hint = match ctx.kind {
        CallKind::Code => "; codes are single-use and short-lived: start connecting the account again",
        CallKind::Refresh => "; reconnect the account",
        CallKind::Api => "; check the text (500 characters at most) and that media URLs are public JPEG/PNG images or MP4/MOV videos",
    };
    PlatformFailure::new(
        if ctx.kind == CallKind::Refresh {
            ErrorClass::ReauthorizationRequired
        } else {
            ErrorClass::Permanent
        },
        code_name,
        format!("Threads rejected the request to {action} (HTTP {status}){said}{hint}"),
    )
}

/// A request that failed in transit, for any call except publishing: nothing irreversible
/// happened, so retry.
pub(crate) fn transport_failure(error: &reqwest::Error, ctx: CallContext) -> PlatformFailure {
    if error.is_builder() {
        return PlatformFailure::new(
            ErrorClass::Permanent,
            "invalid_request",
            format!(
                "Herald could not build the request to {}: check the Threads API base URL",
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
            transport_kind(error)
        ),
    )
}

/// `threads_publish` failed in transit. Only a connection never established proves nothing
/// was published; after that, the post may exist.
pub(crate) fn publish_transport_error(error: &reqwest::Error) -> PostError {
    if error.is_builder() || error.is_connect() {
        return PostError::Failed(transport_failure(error, CallContext::PUBLISH));
    }
    PostError::OutcomeUnknown(format!(
        "the request to publish the post {} after it was sent; the post may exist on Threads",
        transport_kind(error)
    ))
}

fn transport_kind(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect to Threads"
    } else {
        "lost its connection"
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
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

    fn graph(code: i64) -> String {
        format!(
            r#"{{"error":{{"message":"Something (#{code})","type":"OAuthException","code":{code},"fbtrace_id":"Ab"}}}}"#
        )
    }

    fn class(status: u16, code: i64, ctx: CallContext) -> ErrorClass {
        classify(
            status,
            &HeaderMap::new(),
            graph(code).as_bytes(),
            ctx,
            now(),
        )
        .class
    }

    #[test]
    fn graph_codes_are_classified() {
        for code in [4, 17, 32, 613] {
            assert_eq!(
                class(400, code, CallContext::PUBLISH),
                ErrorClass::RateLimited,
                "{code}"
            );
        }
        assert_eq!(
            class(429, 100, CallContext::PUBLISH),
            ErrorClass::RateLimited
        );
        assert_eq!(class(400, 190, CallContext::PUBLISH), ErrorClass::Auth);
        assert_eq!(
            class(400, 190, CallContext::REFRESH),
            ErrorClass::ReauthorizationRequired
        );
        assert_eq!(class(400, 10, CallContext::PUBLISH), ErrorClass::Permanent);
        assert_eq!(class(403, 200, CallContext::PUBLISH), ErrorClass::Permanent);
        assert_eq!(class(400, 100, CallContext::PUBLISH), ErrorClass::Permanent);
        assert_eq!(class(500, 1, CallContext::PUBLISH), ErrorClass::Retryable);
        assert_eq!(class(400, 2, CallContext::PUBLISH), ErrorClass::Retryable);
        assert_eq!(class(503, 0, CallContext::PUBLISH), ErrorClass::Retryable);
        assert_eq!(class(400, 101, CallContext::CODE), ErrorClass::Permanent);
    }

    #[test]
    fn messages_say_what_happened_and_what_to_do() {
        let f = classify(
            400,
            &HeaderMap::new(),
            graph(10).as_bytes(),
            CallContext::PUBLISH,
            now(),
        );
        assert_eq!(f.code, "graph_10");
        assert!(f.message.contains("Something (#10)"), "{}", f.message);
        assert!(f.message.contains("reconnect"), "{}", f.message);
        let f = classify(
            400,
            &HeaderMap::new(),
            b"not json",
            CallContext::PUBLISH,
            now(),
        );
        assert_eq!(f.code, "http_400");
        assert_eq!(f.class, ErrorClass::Permanent);
    }

    #[test]
    fn usage_headers_set_the_wait() {
        let h = headers(&[
            (
                "x-app-usage",
                r#"{"call_count":100,"total_cputime":3,"total_time":4}"#,
            ),
            (
                "x-business-use-case-usage",
                r#"{"123":[{"type":"threads","call_count":100,"total_cputime":1,"total_time":1,"estimated_time_to_regain_access":7}]}"#,
            ),
        ]);
        let f = classify(429, &h, graph(4).as_bytes(), CallContext::PUBLISH, now());
        assert_eq!(f.class, ErrorClass::RateLimited);
        assert_eq!(f.not_before, Some(now() + TimeDelta::minutes(7)));
        assert_eq!(usage(&h, now()), Some((0, now() + TimeDelta::minutes(7))));

        let relaxed = headers(&[(
            "x-app-usage",
            r#"{"call_count":28,"total_cputime":25,"total_time":25}"#,
        )]);
        assert_eq!(usage(&relaxed, now()), Some((72, now())));
        assert_eq!(usage(&HeaderMap::new(), now()), None);
    }
}
