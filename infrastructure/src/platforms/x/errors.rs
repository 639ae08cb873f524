//! X's error bodies and how each failure is classified (ARCHITECTURE invariant 7).
//!
//! X answers errors in two shapes: an RFC 7807 problem (`{title, detail, type, status}`) and
//! the older `{errors: [{code, message}]}`. Both are read; the message tells the user what to do.
use chrono::{DateTime, Utc};
use herald_domain::{ErrorClass, PlatformFailure};
use reqwest::header::HeaderMap;
use serde::Deserialize;

use crate::oauth::retry_after;
use crate::platforms::PostError;
use crate::text::truncate;

/// What the failed call was doing; shapes the message.
#[derive(Debug, Clone, Copy)]
pub struct CallContext {
    /// Completes "could not ...", e.g. "create the post".
    pub action: &'static str,
    /// The OAuth scopes the endpoint needs, for permission errors.
    pub scopes: &'static str,
    /// Media kind word ("image", "GIF", "video") when uploading media.
    pub media: Option<&'static str>,
}

impl CallContext {
    pub const CREATE_POST: Self = Self {
        action: "create the post",
        scopes: "tweet.read, tweet.write and users.read",
        media: None,
    };
    pub const READ_ACCOUNT: Self = Self {
        action: "read the account",
        scopes: "tweet.read and users.read",
        media: None,
    };
    pub const READ_POSTS: Self = Self {
        action: "list the account's posts",
        scopes: "tweet.read and users.read",
        media: None,
    };

    pub fn media(kind: &'static str) -> Self {
        Self {
            action: "upload the media",
            scopes: "media.write",
            media: Some(kind),
        }
    }
}

/// Either X error shape (and an OAuth-style `{error, error_description}` for good measure).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct XErrorBody {
    pub title: Option<String>,
    pub detail: Option<String>,
    #[serde(rename = "type")]
    pub problem_type: Option<String>,
    #[serde(default)]
    pub errors: Vec<XErrorItem>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// One entry of `errors[]`: `{code, message}` or a partial-error problem.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct XErrorItem {
    pub code: Option<i64>,
    pub message: Option<String>,
    pub detail: Option<String>,
    pub title: Option<String>,
}

impl XErrorBody {
    pub fn parse(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }

    /// X's own explanation: the problem `detail`, else the `errors[]` messages, else the title.
    pub fn explanation(&self) -> Option<String> {
        let from_items: Vec<&str> = self
            .errors
            .iter()
            .filter_map(|e| {
                e.message
                    .as_deref()
                    .or(e.detail.as_deref())
                    .or(e.title.as_deref())
            })
            .collect();
        self.detail
            .clone()
            .or_else(|| (!from_items.is_empty()).then(|| from_items.join("; ")))
            .or_else(|| self.error_description.clone())
            .or_else(|| self.title.clone())
            .or_else(|| self.error.clone())
            .filter(|s| !s.trim().is_empty())
            .map(|s| truncate(s.trim(), 400))
    }

    /// The last path segment of a problem `type` other than `about:blank`
    /// (`https://api.x.com/2/problems/usage-capped` → `usage-capped`).
    pub fn problem_kind(&self) -> Option<&str> {
        let t = self.problem_type.as_deref()?;
        if t == "about:blank" {
            return None;
        }
        t.rsplit('/').next().filter(|s| !s.is_empty())
    }

    fn first_code(&self) -> Option<i64> {
        self.errors.iter().find_map(|e| e.code)
    }
}

/// Whether X refused a post because the account recently posted the same text.
pub(crate) fn is_duplicate(body: &XErrorBody) -> bool {
    let text = body.explanation().unwrap_or_default().to_ascii_lowercase();
    // Code 187 is the v1.1 "Status is a duplicate" code X still sends in some paths.
    text.contains("duplicate content")
        || text.contains("is a duplicate")
        || body.first_code() == Some(187)
}

/// The rate-limit window X reported: `x-rate-limit-remaining` and `x-rate-limit-reset`.
pub(crate) fn rate_limit_headers(headers: &HeaderMap) -> (Option<u64>, Option<DateTime<Utc>>) {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    let remaining = number("x-rate-limit-remaining").and_then(|n| u64::try_from(n).ok());
    let reset = number("x-rate-limit-reset").and_then(|s| DateTime::from_timestamp(s, 0));
    (remaining, reset)
}

/// When a refused call may be tried again: `Retry-After`, else the rate-limit reset — but only
/// when the window is spent: X sends its window headers on every answer, and a 5xx with budget
/// left must not wait for the (up to 15-minute) window to reset.
pub(crate) fn not_before(headers: &HeaderMap, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    retry_after(headers, now).or_else(|| {
        let (remaining, reset) = rate_limit_headers(headers);
        reset.filter(|at| *at > now && remaining.is_none_or(|left| left == 0))
    })
}

/// Whether X's explanation is about access (scopes, permissions, OAuth) rather than content.
fn mentions_access(explanation: &str) -> bool {
    let lower = explanation.to_ascii_lowercase();
    ["scope", "permission", "oauth", "authoriz", "authentic"]
        .iter()
        .any(|word| lower.contains(word))
}

/// Classifies an X error response.
pub(crate) fn classify(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    ctx: CallContext,
    now: DateTime<Utc>,
) -> PlatformFailure {
    let parsed = XErrorBody::parse(body);
    let said = parsed
        .explanation()
        .map(|e| format!(": {e}"))
        .unwrap_or_default();
    let action = ctx.action;
    let specific_code = || {
        parsed
            .problem_kind()
            .map(str::to_owned)
            .or_else(|| parsed.first_code().map(|c| format!("x_{c}")))
            .unwrap_or_else(|| format!("http_{status}"))
    };
    let with_wait = |failure: PlatformFailure| match not_before(headers, now) {
        Some(at) => failure.not_before(at),
        None => failure,
    };

    match status {
        429 => {
            let capped = parsed.problem_kind() == Some("usage-capped");
            let message = if capped {
                format!("X's usage cap for this app or account is reached{said}; Herald waits for the cap to reset")
            } else {
                format!("X's rate limit is exhausted{said}; Herald waits for the window to reset")
            };
            with_wait(PlatformFailure::new(
                ErrorClass::RateLimited,
                "http_429",
                message,
            ))
        }
        500..=599 => with_wait(PlatformFailure::new(
            ErrorClass::Retryable,
            format!("http_{status}"),
            format!("X failed to {action} (HTTP {status}); Herald will try again"),
        )),
        401 => PlatformFailure::new(
            ErrorClass::Auth,
            "http_401",
            format!("X did not accept the access token to {action} (expired or revoked); Herald refreshes it and tries again"),
        ),
        403 if is_duplicate(&parsed) => PlatformFailure::new(
            ErrorClass::Permanent,
            herald_domain::failure::DUPLICATE_POST,
            "X refused this post as a duplicate of a recent post by the same account: change the text",
        ),
        403 => {
            let hint = match parsed.problem_kind() {
                Some("client-forbidden") => " Attach the X app to a project with API access in the X developer portal.".to_owned(),
                Some("unsupported-authentication") => " Herald must call X with a user token: reconnect the account.".to_owned(),
                _ if mentions_access(&said) => format!(
                    " Check that the account granted the {} scopes (reconnect it if not) and that the X app has Read and Write permission.",
                    ctx.scopes
                ),
                // Anything else is X refusing this content: the user changes the post.
                _ => " Change the post so that X accepts it, then retry the job.".to_owned(),
            };
            PlatformFailure::new(
                ErrorClass::Permanent,
                specific_code(),
                format!("X refused to {action}{said}.{hint}"),
            )
        }
        _ => {
            let hint = match ctx.media {
                Some(kind) => format!("; check the {kind}'s format and size against X's limits (images up to 5 MB, GIFs up to 15 MB, videos MP4/MOV up to 512 MB and 140 s)"),
                None => String::new(),
            };
            PlatformFailure::new(
                ErrorClass::Permanent,
                specific_code(),
                format!("X rejected the request to {action} (HTTP {status}){said}{hint}"),
            )
        }
    }
}

/// A request that failed in transit, for any call except creating a post: retry.
pub(crate) fn transport_failure(error: &reqwest::Error, ctx: CallContext) -> PlatformFailure {
    if error.is_builder() {
        return PlatformFailure::new(
            ErrorClass::Permanent,
            "invalid_request",
            format!(
                "Herald could not build the request to {}: check the X API base URL",
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

/// A request to create a post that failed in transit. Only a connection that was never
/// established proves nothing was sent; after that, the post may exist.
pub(crate) fn post_transport_error(error: &reqwest::Error) -> PostError {
    if error.is_builder() || error.is_connect() {
        return PostError::Failed(transport_failure(error, CallContext::CREATE_POST));
    }
    PostError::OutcomeUnknown(format!(
        "the request to create the post {} after it was sent; the post may exist on X",
        transport_kind(error)
    ))
}

fn transport_kind(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect to X"
    } else {
        "lost its connection"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use reqwest::header::HeaderValue;

    fn after(now: DateTime<Utc>, secs: i64) -> DateTime<Utc> {
        now + TimeDelta::seconds(secs)
    }

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

    fn classify_post(status: u16, h: &HeaderMap, body: &str) -> PlatformFailure {
        classify(status, h, body.as_bytes(), CallContext::CREATE_POST, now())
    }

    #[test]
    fn rate_limited_waits_for_retry_after_then_reset() {
        let reset = (now().timestamp() + 600).to_string();
        let h = headers(&[("retry-after", "30"), ("x-rate-limit-reset", &reset)]);
        let f = classify_post(
            429,
            &h,
            r#"{"title":"Too Many Requests","type":"about:blank","status":429,"detail":"Too Many Requests"}"#,
        );
        assert_eq!(f.class, ErrorClass::RateLimited);
        assert_eq!(f.code, "http_429");
        assert_eq!(f.not_before, Some(after(now(), 30)));

        let h = headers(&[
            ("x-rate-limit-reset", &reset),
            ("x-rate-limit-remaining", "0"),
        ]);
        let f = classify_post(
            429,
            &h,
            r#"{"errors":[{"code":88,"message":"Rate limit exceeded"}]}"#,
        );
        assert_eq!(f.not_before, Some(after(now(), 600)));
        assert!(f.message.contains("Rate limit exceeded"));

        let capped = r#"{"title":"UsageCapExceeded","type":"https://api.x.com/2/problems/usage-capped","detail":"Usage cap exceeded: Monthly product cap","period":"Monthly"}"#;
        assert!(classify_post(429, &HeaderMap::new(), capped)
            .message
            .contains("usage cap"));
    }

    #[test]
    fn server_errors_are_retryable() {
        let f = classify_post(503, &HeaderMap::new(), "<html>busy</html>");
        assert_eq!(
            (f.class, f.code.as_str()),
            (ErrorClass::Retryable, "http_503")
        );
        assert_eq!(f.not_before, None);
        // Window headers come with every answer; budget left means no wait for the reset.
        let reset = (now().timestamp() + 600).to_string();
        let h = headers(&[
            ("x-rate-limit-remaining", "99"),
            ("x-rate-limit-reset", &reset),
        ]);
        assert_eq!(classify_post(503, &h, "").not_before, None);
    }

    #[test]
    fn unauthorized_is_auth() {
        let f = classify_post(
            401,
            &HeaderMap::new(),
            r#"{"title":"Unauthorized","type":"about:blank","status":401,"detail":"Unauthorized"}"#,
        );
        assert_eq!(f.class, ErrorClass::Auth);
    }

    #[test]
    fn duplicate_is_permanent_with_advice() {
        let body = r#"{"detail":"You are not allowed to create a Tweet with duplicate content.","type":"about:blank","title":"Forbidden","status":403}"#;
        let f = classify_post(403, &HeaderMap::new(), body);
        assert_eq!(f.class, ErrorClass::Permanent);
        assert!(f.is_duplicate_post());
        assert!(f.message.contains("change the text"));
    }

    #[test]
    fn other_forbidden_names_scopes_or_fix() {
        let body = r#"{"detail":"Missing required OAuth 2.0 scope(s): tweet.write","type":"about:blank","title":"Forbidden","status":403}"#;
        let f = classify_post(403, &HeaderMap::new(), body);
        assert_eq!(
            (f.class, f.code.as_str()),
            (ErrorClass::Permanent, "http_403")
        );
        assert!(f.message.contains("tweet.write"), "{}", f.message);
        assert!(f.message.contains("Read and Write"));

        let body = r#"{"title":"Unsupported Authentication","detail":"Authenticating with OAuth 2.0 Application-Only is forbidden for this endpoint.","type":"https://api.twitter.com/2/problems/unsupported-authentication","status":403}"#;
        let f = classify_post(403, &HeaderMap::new(), body);
        assert_eq!(f.code, "unsupported-authentication");
        assert!(f.message.contains("user token"));

        let body = r#"{"detail":"This request looks like it might be automated.","type":"about:blank","title":"Forbidden","status":403}"#;
        let f = classify_post(403, &HeaderMap::new(), body);
        assert!(f.message.contains("Change the post"), "{}", f.message);
        assert!(!f.message.contains("scopes"), "{}", f.message);
    }

    #[test]
    fn bad_request_carries_x_detail() {
        let body = r#"{"title":"Invalid Request","detail":"The `poll.duration_minutes` value [4] must be between 5 and 10080.","type":"https://api.x.com/2/problems/invalid-request","status":400}"#;
        let f = classify_post(400, &HeaderMap::new(), body);
        assert_eq!(
            (f.class, f.code.as_str()),
            (ErrorClass::Permanent, "invalid-request")
        );
        assert!(f.message.contains("between 5 and 10080"));

        let f = classify(
            400,
            &HeaderMap::new(),
            br#"{"errors":[{"code":324,"message":"Invalid media"}]}"#,
            CallContext::media("video"),
            now(),
        );
        assert_eq!(f.code, "x_324");
        assert!(f.message.contains("Invalid media") && f.message.contains("video's format"));
    }

    #[test]
    fn rate_limit_headers_parse() {
        let h = headers(&[
            ("x-rate-limit-remaining", "99"),
            ("x-rate-limit-reset", "1740830400"),
        ]);
        let (remaining, reset) = rate_limit_headers(&h);
        assert_eq!(remaining, Some(99));
        assert_eq!(reset.unwrap().timestamp(), 1_740_830_400);
        assert_eq!(
            rate_limit_headers(&headers(&[("x-rate-limit-remaining", "-1")])).0,
            None
        );
    }
}
