//! Reddit's error shapes and how each failure is classified (platform-facts §9.2, §9.3;
//! ARCHITECTURE invariant 7).
//!
//! Two kinds: an HTTP error with `{"message", "error"}` (or an HTML page), and — for
//! `api_type=json` calls such as `/api/submit` — HTTP 200 with
//! `{"json": {"errors": [[code, message, field], ...], "ratelimit": seconds}}`.
use chrono::{DateTime, TimeDelta, Utc};
use herald_domain::{ErrorClass, PlatformFailure};
use reqwest::header::HeaderMap;
use serde::Deserialize;

use crate::platforms::PostError;

/// How long to stay away after a 429 without rate-limit headers.
const DEFAULT_429_WAIT_SECS: i64 = 60;
/// `RATELIMIT` without a readable wait: Reddit's usual cool-down.
const DEFAULT_SUBMIT_WAIT_SECS: i64 = 600;

/// What the failed call was doing.
#[derive(Debug, Clone, Copy)]
pub struct CallContext {
    /// Completes "could not ...", e.g. "submit the post".
    pub action: &'static str,
}

impl CallContext {
    pub const READ_ACCOUNT: Self = Self::new("read the Reddit account");
    pub const LEASE_MEDIA: Self = Self::new("get an upload lease for the media");
    pub const SUBMIT: Self = Self::new("submit the post");
    pub const READ_FLAIRS: Self = Self::new("list the subreddit's flairs");
    pub const READ_POSTS: Self = Self::new("list the account's posts");

    const fn new(action: &'static str) -> Self {
        Self { action }
    }
}

#[derive(Debug, Default, Deserialize)]
struct PlainError {
    message: Option<String>,
    reason: Option<String>,
}

/// A non-negative number header (Reddit sends floats such as `"598.0"`).
fn number(headers: &HeaderMap, name: &str) -> Option<f64> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
}

/// `(remaining, reset)` from `X-Ratelimit-Remaining` and `X-Ratelimit-Reset` (seconds to the
/// end of the window).
pub(crate) fn ratelimit_headers(
    headers: &HeaderMap,
    now: DateTime<Utc>,
) -> (Option<u64>, Option<DateTime<Utc>>) {
    let remaining = number(headers, "x-ratelimit-remaining").map(|r| r.floor() as u64);
    let reset =
        number(headers, "x-ratelimit-reset").map(|s| now + TimeDelta::seconds(s.ceil() as i64));
    (remaining, reset)
}

/// `X-Ratelimit-Used` + `X-Ratelimit-Remaining`: how many requests the period allows.
pub(crate) fn ratelimit_size(headers: &HeaderMap) -> Option<u64> {
    let used = number(headers, "x-ratelimit-used")?;
    Some((used + number(headers, "x-ratelimit-remaining")?).round() as u64)
}

/// Classifies an HTTP error from Reddit's API.
pub(crate) fn classify_http(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    ctx: CallContext,
    now: DateTime<Utc>,
) -> PlatformFailure {
    let parsed: PlainError = serde_json::from_slice(body).unwrap_or_default();
    let said = parsed
        .reason
        .or(parsed.message)
        .filter(|m| !m.trim().is_empty())
        .map(|m| format!(" ({})", m.trim()))
        .unwrap_or_default();
    let action = ctx.action;
    let code = format!("http_{status}");
    match status {
        429 => {
            let (_, reset) = ratelimit_headers(headers, now);
            let until = reset
                .filter(|at| *at > now)
                .unwrap_or(now + TimeDelta::seconds(DEFAULT_429_WAIT_SECS));
            PlatformFailure::new(
                ErrorClass::RateLimited,
                code,
                format!("Reddit's request budget for this app (100 per minute per client id) is used up{said}; Herald tries to {action} again after {}", until.to_rfc3339()),
            )
            .not_before(until)
        }
        500..=599 => PlatformFailure::new(
            ErrorClass::Retryable,
            code,
            format!("Reddit failed to {action} (HTTP {status}){said}; Herald will try again"),
        ),
        401 => PlatformFailure::new(
            ErrorClass::Auth,
            code,
            format!("Reddit did not accept the access token to {action}{said} (they last an hour); Herald refreshes it and tries again"),
        ),
        403 => PlatformFailure::new(
            ErrorClass::Permanent,
            code,
            format!("Reddit refused to {action}{said}: the connection may lack a scope (reconnect granting identity, submit, read, history and flair), the account may be suspended, or Reddit refuses Herald's User-Agent (set REDDIT_USER_AGENT to <platform>:<app ID>:<version> (by /u/<your Reddit username>))"),
        ),
        404 => PlatformFailure::new(
            ErrorClass::Permanent,
            code,
            format!("Reddit found nothing to {action}{said}: check the subreddit's name and the Reddit API base URL"),
        ),
        _ => PlatformFailure::new(
            ErrorClass::Permanent,
            code,
            format!("Reddit refused to {action} with HTTP {status}{said}"),
        ),
    }
}

/// The wait a `RATELIMIT` error asks for: the envelope's `ratelimit` seconds, else the
/// message's "try again in N minutes/seconds/milliseconds".
pub(crate) fn submit_wait(ratelimit: Option<f64>, message: &str) -> TimeDelta {
    if let Some(secs) = ratelimit.filter(|s| s.is_finite() && *s >= 0.0) {
        return TimeDelta::milliseconds((secs * 1000.0).ceil() as i64);
    }
    let lower = message.to_ascii_lowercase();
    let after = lower.split("try again in ").nth(1).unwrap_or_default();
    let mut words = after.split_whitespace();
    let amount = words.next().and_then(|n| n.parse::<i64>().ok());
    let unit = words.next().unwrap_or_default();
    match amount {
        Some(n) if unit.starts_with("millisecond") => TimeDelta::milliseconds(n),
        Some(n) if unit.starts_with("second") => TimeDelta::seconds(n),
        Some(n) if unit.starts_with("minute") => TimeDelta::minutes(n),
        Some(n) if unit.starts_with("hour") => TimeDelta::hours(n),
        _ => TimeDelta::seconds(DEFAULT_SUBMIT_WAIT_SECS),
    }
}

/// Classifies an error of the `api_type=json` envelope for a submission to `r/{subreddit}`.
/// `flairs` lists the subreddit's flairs for `SUBMIT_VALIDATION_FLAIR_REQUIRED`.
pub(crate) fn classify_submit(
    code: &str,
    message: &str,
    field: &str,
    ratelimit: Option<f64>,
    subreddit: &str,
    flairs: Option<&str>,
    now: DateTime<Utc>,
) -> PlatformFailure {
    let sr = format!("r/{subreddit}");
    let said = if message.trim().is_empty() {
        String::new()
    } else {
        format!(" (Reddit: \"{}\")", message.trim())
    };
    let permanent = |text: String| PlatformFailure::new(ErrorClass::Permanent, code, text);
    match code {
        "RATELIMIT" => {
            let until = now + submit_wait(ratelimit, message);
            PlatformFailure::new(
                ErrorClass::RateLimited,
                code,
                format!("Reddit limits how often this account may post{said}; Herald submits again after {}", until.to_rfc3339()),
            )
            .not_before(until)
        }
        "SUBREDDIT_NOEXIST" => permanent(format!("{sr} does not exist{said}: check options.reddit.subreddit")),
        "SUBREDDIT_NOTALLOWED" => permanent(format!("this account may not post in {sr}{said}: it is private or restricted, or the account is banned there; ask its moderators or choose another subreddit")),
        "SUBREDDIT_REQUIRED" => permanent(format!("Reddit needs a subreddit{said}: set options.reddit.subreddit")),
        "INVALID_OPTION" => permanent(format!("{sr} does not take this kind of post{said}: check which posts it allows (text, links, images, galleries, videos), then change the post or choose another subreddit")),
        // Seen from Reddit for a gallery naming assets the submitter did not upload.
        "INVALID_MEDIA_ASSETS" => permanent(format!("Reddit did not accept the uploaded media of this post{said}; retry the job to upload them again")),
        "NO_SELFS" => permanent(format!("{sr} does not allow text posts{said}: add a link or an image, or choose another subreddit")),
        "NO_LINKS" => permanent(format!("{sr} only allows text posts{said}: remove the link or image")),
        "IN_TIMEOUT" => permanent(format!("the Reddit account is in a timeout and cannot post{said}; wait until it ends")),
        "NO_TEXT" => permanent(format!("Reddit needs something in the {}{said}: give the post a title", field_name(field))),
        "TOO_LONG" => permanent(format!("the post's {} is too long{said}: titles take 300 characters, text posts 40,000", field_name(field))),
        "NO_URL" => permanent(format!("a link post needs a link{said}: set the link")),
        "BAD_URL" => permanent(format!("Reddit cannot use the link{said}: check that it is a complete http(s) URL")),
        "DOMAIN_BANNED" => permanent(format!("links to this domain are banned in {sr}{said}; share another link")),
        "ALREADY_SUB" => PlatformFailure::new(
            ErrorClass::Permanent,
            herald_domain::failure::DUPLICATE_POST,
            format!("this link was already submitted to {sr}{said}; share it in another subreddit or share another link"),
        ),
        "BAD_CAPTCHA" => permanent(format!("Reddit asks this account to solve a captcha before posting{said}; post once on reddit.com (or gain some karma), then try again")),
        "SUBMIT_VALIDATION_FLAIR_REQUIRED" => permanent(match flairs {
            Some(list) if !list.is_empty() => format!("{sr} requires post flair{said}: set options.reddit.flair_id to one of {list}"),
            _ => format!("{sr} requires post flair{said}: set options.reddit.flair_id (see the subreddit's flairs on Reddit)"),
        }),
        "INVALID_FLAIR_TEMPLATE_ID" | "BAD_FLAIR_TARGET" => permanent(match flairs {
            Some(list) if !list.is_empty() => format!("{sr} has no such flair{said}: use one of {list}"),
            _ => format!("{sr} has no such flair{said}: check options.reddit.flair_id"),
        }),
        "USER_REQUIRED" => PlatformFailure::new(
            ErrorClass::Auth,
            code,
            format!("Reddit did not see a logged-in user{said}; Herald refreshes the token and tries again"),
        ),
        _ => permanent(format!("Reddit refused the post ({code}){said}; change it and try again")),
    }
}

fn field_name(field: &str) -> &str {
    match field {
        "" => "post",
        "text" => "text",
        other => other,
    }
}

/// A request that got no response.
pub(crate) fn transport_failure(error: &reqwest::Error, ctx: CallContext) -> PlatformFailure {
    crate::platforms::http::default_transport_failure("Reddit", ctx.action, error)
}

/// `/api/submit` failed in transit. Only a connection never established proves nothing was
/// posted; after that, the post may exist.
pub(crate) fn submit_transport_error(error: &reqwest::Error) -> PostError {
    if error.is_builder() || error.is_connect() {
        return PostError::Failed(transport_failure(error, CallContext::SUBMIT));
    }
    let what = if error.is_timeout() {
        "timed out"
    } else {
        "lost its connection"
    };
    PostError::OutcomeUnknown(format!(
        "the request to submit the post {what} after it was sent; the post may exist on Reddit"
    ))
}

/// `<Code>` and `<Message>` of an S3 error document.
pub(crate) fn s3_error(body: &str) -> (String, String) {
    let tag = |name: &str| {
        body.split(&format!("<{name}>"))
            .nth(1)
            .and_then(|rest| rest.split(&format!("</{name}>")).next())
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    (tag("Code"), tag("Message"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn ratelimit_waits_come_from_the_envelope_or_the_message() {
        assert_eq!(submit_wait(Some(61.2), ""), TimeDelta::milliseconds(61_200));
        assert_eq!(
            submit_wait(None, "you are doing that too much. try again in 9 minutes."),
            TimeDelta::minutes(9)
        );
        assert_eq!(
            submit_wait(None, "you are doing that too much. try again in 5 seconds."),
            TimeDelta::seconds(5)
        );
        let failure = classify_submit(
            "RATELIMIT",
            "you are doing that too much. try again in 2 minutes.",
            "ratelimit",
            None,
            "rust",
            None,
            now(),
        );
        assert_eq!(failure.class, ErrorClass::RateLimited);
        assert_eq!(failure.not_before, Some(now() + TimeDelta::minutes(2)));
    }

    #[test]
    fn every_documented_submit_error_is_actionable() {
        for code in [
            "SUBREDDIT_NOEXIST",
            "SUBREDDIT_NOTALLOWED",
            "SUBREDDIT_REQUIRED",
            "INVALID_OPTION",
            "NO_SELFS",
            "NO_LINKS",
            "IN_TIMEOUT",
            "NO_TEXT",
            "TOO_LONG",
            "NO_URL",
            "BAD_URL",
            "DOMAIN_BANNED",
            "BAD_CAPTCHA",
            "SUBMIT_VALIDATION_FLAIR_REQUIRED",
            "INVALID_MEDIA_ASSETS",
        ] {
            let f = classify_submit(code, "m", "title", None, "rust", None, now());
            assert_eq!(f.class, ErrorClass::Permanent, "{code}");
            assert_eq!(f.code, code);
            assert!(f.message.len() > 30, "{code}: {}", f.message);
        }
        let dup = classify_submit("ALREADY_SUB", "m", "url", None, "rust", None, now());
        assert_eq!(dup.code, herald_domain::failure::DUPLICATE_POST);
        let flair = classify_submit(
            "SUBMIT_VALIDATION_FLAIR_REQUIRED",
            "Your post must contain post flair.",
            "flair",
            None,
            "pics",
            Some("\"a1\" (Discussion)"),
            now(),
        );
        assert!(flair.message.contains("\"a1\" (Discussion)"));
    }

    #[test]
    fn a_429_waits_for_the_window_reset() {
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0.0"));
        headers.insert("x-ratelimit-reset", HeaderValue::from_static("42"));
        let f = classify_http(429, &headers, b"{}", CallContext::SUBMIT, now());
        assert_eq!(f.class, ErrorClass::RateLimited);
        assert_eq!(f.not_before, Some(now() + TimeDelta::seconds(42)));
        assert_eq!(ratelimit_headers(&headers, now()).0, Some(0));
        assert_eq!(
            classify_http(401, &headers, b"{}", CallContext::SUBMIT, now()).class,
            ErrorClass::Auth
        );
        assert_eq!(
            classify_http(
                503,
                &HeaderMap::new(),
                b"<html>",
                CallContext::SUBMIT,
                now()
            )
            .class,
            ErrorClass::Retryable
        );
    }

    #[test]
    fn s3_errors_are_read() {
        assert_eq!(
            s3_error("<Error><Code>EntityTooLarge</Code><Message>too big</Message></Error>"),
            ("EntityTooLarge".to_owned(), "too big".to_owned())
        );
    }
}
