//! Graph API error bodies and usage headers, and how each Threads failure is classified
//! (platform-facts §3.2, §3.3; ARCHITECTURE invariant 7).
use chrono::{DateTime, Utc};
use herald_domain::{ErrorClass, PlatformFailure};
use reqwest::header::HeaderMap;

use crate::platforms::meta::graph::{self, GraphErrorBody};
pub use crate::platforms::meta::graph::{CallContext, CallKind};
use crate::platforms::PostError;

// The Threads calls, named for messages.
pub(crate) const READ_ACCOUNT: CallContext = CallContext::api("read the account");
pub(crate) const CREATE_CONTAINER: CallContext =
    CallContext::api("create the post's media container");
pub(crate) const CONTAINER_STATUS: CallContext =
    CallContext::api("check the media container's status");
pub(crate) const PUBLISH: CallContext = CallContext::api("publish the post");
pub(crate) const READ_POSTS: CallContext = CallContext::api("list the account's posts");
pub(crate) const READ_QUOTA: CallContext = CallContext::api("read the publishing limit");

// Replies need permissions of their own: "threads_manage_replies — Required for making POST
// calls to reply endpoints", "threads_read_replies — Required for making GET calls to reply
// endpoints" (https://developers.facebook.com/documentation/threads/retrieve-and-manage-replies);
// reading the reply quota needs threads_manage_replies too (same page).
const MANAGE_REPLIES: &str = "threads_manage_replies";
pub(crate) const CREATE_REPLY: CallContext =
    CallContext::api("create the reply's media container").needing(MANAGE_REPLIES);
pub(crate) const PUBLISH_REPLY: CallContext =
    CallContext::api("publish the reply").needing(MANAGE_REPLIES);
pub(crate) const READ_REPLY_QUOTA: CallContext =
    CallContext::api("read the reply publishing limit").needing(MANAGE_REPLIES);
pub(crate) const READ_REPLIES: CallContext =
    CallContext::api("list the replies").needing("threads_read_replies");

fn not_before(headers: &HeaderMap, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    graph::not_before(headers, now)
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
    let code_name = parsed.code_name(status);
    let with_wait = |failure: PlatformFailure| match not_before(headers, now) {
        Some(at) => failure.not_before(at),
        None => failure,
    };

    if status == 429 || matches!(code, Some(4 | 17 | 32 | 613 | 80001 | 80002)) {
        return with_wait(PlatformFailure::new(
            ErrorClass::RateLimited,
            code_name,
            format!("Threads' rate limit or publishing quota (250 posts and 1,000 replies per 24 hours) is used up{said}; Herald waits before trying to {action} again"),
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
        if let Some(permission) = ctx.permission {
            // A connection made before Herald asked for it (or that declined it): no retry
            // helps, the user has to grant it.
            return PlatformFailure::new(
                ErrorClass::ReauthorizationRequired,
                code_name,
                format!("Threads refused to {action}{said}: it needs the {permission} permission, which the account did not grant to Herald; reconnect the account and allow it"),
            );
        }
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

/// A request that failed in transit, for any call except publishing: retry.
pub(crate) fn transport_failure(error: &reqwest::Error, ctx: CallContext) -> PlatformFailure {
    graph::transport_failure("Threads", error, ctx)
}

/// `threads_publish` (`ctx`: of a post or a reply) failed in transit: the post may exist
/// unless no connection was made.
pub(crate) fn publish_transport_error(error: &reqwest::Error, ctx: CallContext) -> PostError {
    graph::publish_transport_error("Threads", error, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
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
            assert_eq!(class(400, code, PUBLISH), ErrorClass::RateLimited, "{code}");
        }
        assert_eq!(class(429, 100, PUBLISH), ErrorClass::RateLimited);
        assert_eq!(class(400, 190, PUBLISH), ErrorClass::Auth);
        assert_eq!(
            class(400, 190, CallContext::REFRESH),
            ErrorClass::ReauthorizationRequired
        );
        assert_eq!(class(400, 10, PUBLISH), ErrorClass::Permanent);
        assert_eq!(class(403, 200, PUBLISH), ErrorClass::Permanent);
        assert_eq!(class(400, 100, PUBLISH), ErrorClass::Permanent);
        assert_eq!(class(500, 1, PUBLISH), ErrorClass::Retryable);
        assert_eq!(class(400, 2, PUBLISH), ErrorClass::Retryable);
        assert_eq!(class(503, 0, PUBLISH), ErrorClass::Retryable);
        assert_eq!(class(400, 101, CallContext::CODE), ErrorClass::Permanent);
    }

    #[test]
    fn messages_say_what_happened_and_what_to_do() {
        let f = classify(400, &HeaderMap::new(), graph(10).as_bytes(), PUBLISH, now());
        assert_eq!(f.code, "graph_10");
        assert!(f.message.contains("Something (#10)"), "{}", f.message);
        assert!(f.message.contains("reconnect"), "{}", f.message);
        let f = classify(400, &HeaderMap::new(), b"not json", PUBLISH, now());
        assert_eq!(f.code, "http_400");
        assert_eq!(f.class, ErrorClass::Permanent);
    }

    #[test]
    fn a_permission_refusal_of_a_reply_call_asks_to_reconnect_naming_the_permission() {
        for (ctx, permission) in [
            (CREATE_REPLY, "threads_manage_replies"),
            (PUBLISH_REPLY, "threads_manage_replies"),
            (READ_REPLY_QUOTA, "threads_manage_replies"),
            (READ_REPLIES, "threads_read_replies"),
        ] {
            for (status, code) in [(403, 10), (400, 200)] {
                let f = classify(
                    status,
                    &HeaderMap::new(),
                    graph(code).as_bytes(),
                    ctx,
                    now(),
                );
                assert_eq!(f.class, ErrorClass::ReauthorizationRequired, "{ctx:?}");
                assert!(f.message.contains(permission), "{}", f.message);
                assert!(f.message.contains("reconnect"), "{}", f.message);
            }
        }
        // Any other refusal of a reply stays what it is.
        assert_eq!(class(400, 100, CREATE_REPLY), ErrorClass::Permanent);
        assert_eq!(class(400, 190, CREATE_REPLY), ErrorClass::Auth);
        assert_eq!(class(400, 4, PUBLISH_REPLY), ErrorClass::RateLimited);
        // A post's permission refusal is not a missing reply permission.
        let f = classify(403, &HeaderMap::new(), graph(10).as_bytes(), PUBLISH, now());
        assert_eq!(f.class, ErrorClass::Permanent);
        assert!(!f.message.contains("replies"), "{}", f.message);
    }

    #[test]
    fn usage_headers_set_the_wait() {
        let h = headers(&[(
            "x-business-use-case-usage",
            r#"{"123":[{"type":"threads","call_count":100,"total_cputime":1,"total_time":1,"estimated_time_to_regain_access":7}]}"#,
        )]);
        let f = classify(429, &h, graph(4).as_bytes(), PUBLISH, now());
        assert_eq!(f.class, ErrorClass::RateLimited);
        assert_eq!(f.not_before, Some(now() + TimeDelta::minutes(7)));
    }
}
