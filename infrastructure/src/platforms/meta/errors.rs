//! How a Facebook Pages or Instagram failure is classified (platform-facts §3.2, §4.4;
//! ARCHITECTURE invariant 7): every Graph code and Instagram subcode Herald knows, with a
//! message that says what happened and what to do.
use chrono::{DateTime, Utc};
use herald_domain::{ErrorClass, PlatformFailure};
use reqwest::header::HeaderMap;

use super::graph::{not_before, CallContext, CallKind, GraphErrorBody};

/// What differs between the two platforms in messages.
#[derive(Debug, Clone, Copy)]
pub struct GraphPlatform {
    /// "Facebook" or "Instagram".
    pub name: &'static str,
    /// The permissions publishing needs, for the advice on a refusal.
    pub permissions: &'static str,
    /// What the user does to reconnect, e.g. "connect your Facebook Pages again".
    pub reconnect: &'static str,
    /// The settings that hold the app's credentials.
    pub credentials: &'static str,
}

/// `PlatformApi` for a Facebook Pages or Instagram adapter: Meta's usage headers, the Graph
/// error envelope, and failures classified with the adapter's [`GraphPlatform`] (`$platform`).
/// One definition for both adapters, which differ only in that constant.
macro_rules! graph_platform_api {
    ($adapter:ty, $platform:expr) => {
        impl $crate::platforms::http::PlatformApi for $adapter {
            type Context = $crate::platforms::meta::graph::CallContext;

            fn name(&self) -> &'static str {
                $platform.name
            }

            fn action(&self, ctx: Self::Context) -> &'static str {
                ctx.action
            }

            /// Meta's budgets are not per endpoint (see `shared_rate_limits`); an endpoint only
            /// closes on a 429 with `Retry-After`.
            fn rate_limit(
                &self,
                status: reqwest::StatusCode,
                headers: &reqwest::header::HeaderMap,
                now: chrono::DateTime<chrono::Utc>,
            ) -> (Option<u64>, Option<chrono::DateTime<chrono::Utc>>) {
                $crate::platforms::http::retry_after_on_429(status, headers, now)
            }

            /// Every call draws from the app's budget (`X-App-Usage`, shared by every account
            /// of the Meta app) and the account's (`X-Business-Use-Case-Usage`,
            /// `X-Page-Usage`).
            fn shared_budgets(&self, _endpoint: &str) -> Vec<String> {
                vec![
                    $crate::platforms::meta::graph::app_budget(&self.config.graph.client_id),
                    $crate::platforms::meta::graph::ACCOUNT_BUDGET.to_owned(),
                ]
            }

            /// Meta's usage headers, each for the budget it counts.
            fn shared_rate_limits(
                &self,
                _status: reqwest::StatusCode,
                headers: &reqwest::header::HeaderMap,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Vec<$crate::platforms::http::SharedReading> {
                $crate::platforms::meta::graph::shared_rate_limits(
                    &self.config.graph.client_id,
                    headers,
                    now,
                )
            }

            fn classify(
                &self,
                status: reqwest::StatusCode,
                headers: &reqwest::header::HeaderMap,
                body: &[u8],
                ctx: Self::Context,
                now: chrono::DateTime<chrono::Utc>,
            ) -> herald_domain::PlatformFailure {
                $crate::platforms::meta::errors::classify(
                    &$platform,
                    status.as_u16(),
                    headers,
                    body,
                    ctx,
                    now,
                )
            }

            fn transport_failure(
                &self,
                error: &reqwest::Error,
                ctx: Self::Context,
            ) -> herald_domain::PlatformFailure {
                $crate::platforms::meta::graph::transport_failure($platform.name, error, ctx)
            }

            fn is_error_body(&self, body: &serde_json::Value) -> bool {
                $crate::platforms::meta::graph::is_error_body(body)
            }
        }
    };
}
pub(crate) use graph_platform_api;

/// Class and advice for an Instagram publishing subcode (the error-codes reference, facts
/// §4.4; the subcodes beyond the facts table come from the same page's full list).
pub fn instagram_subcode(subcode: i64) -> Option<(ErrorClass, &'static str)> {
    use ErrorClass::{Permanent, RateLimited, Retryable};
    Some(match subcode {
        2_207_001 => (Retryable, "Instagram had a server error; Herald tries again"),
        2_207_003 => (Retryable, "Instagram took too long to download the media; Herald tries again (a smaller file or a faster host helps)"),
        2_207_020 => (Retryable, "the media container expired before it was published; Herald makes a new one"),
        2_207_032 => (Retryable, "Instagram could not create the media; Herald creates it again"),
        2_207_053 => (Retryable, "Instagram had an unknown error uploading the video; Herald makes a new container"),
        2_207_006 => (Retryable, "Instagram cannot find the media container (expired or not visible to this token); Herald makes a new one"),
        2_207_008 => (Retryable, "Instagram's media builder expired; Herald tries again"),
        2_207_027 => (Retryable, "the media is not ready to publish yet; Herald waits and tries again"),
        2_207_042 => (RateLimited, "the Instagram account reached its publishing limit (posts per 24 hours); Herald publishes when the oldest post leaves the 24-hour window"),
        2_207_051 => (Permanent, "Instagram restricted this action as possible spam; change the post (text, links, hashtags) or wait before posting similar content"),
        2_207_050 => (Permanent, "the Instagram account is restricted (inactive or checkpointed); sign in to the Instagram app, resolve it, then publish again"),
        2_207_057 => (Permanent, "the cover's thumbnail offset is outside the video; give an offset within the video's length"),
        2_207_023 => (Permanent, "Instagram does not know this media type; publish an image, a video (as a reel), a story or a carousel"),
        2_207_028 => (Permanent, "a carousel takes 2 to 10 photos or videos"),
        2_207_040 => (Permanent, "a post may @-mention at most 20 accounts; remove some"),
        2_207_026 => (Permanent, "Instagram does not take this video: use MP4 or MOV (H.264/HEVC, 23-60 fps), 3 s to 15 min and at most 300 MB (stories: up to 60 s and 100 MB)"),
        2_207_052 => (Permanent, "Instagram could not fetch the media from its URL; make the URL public (no login, no redirect to a web page) and publish again"),
        2_207_004 => (Permanent, "the image is larger than Instagram's 8 MB; make it smaller"),
        2_207_005 => (Permanent, "Instagram does not take this image format; use a JPEG"),
        2_207_009 => (Permanent, "the image's aspect ratio must be between 4:5 and 1.91:1; crop it"),
        2_207_010 => (Permanent, "the caption is over Instagram's limits (2,200 characters, 30 hashtags, 20 @-mentions); shorten it"),
        _ => return None,
    })
}

/// Classifies a Graph API error response of Facebook Pages or Instagram.
pub fn classify(
    platform: &GraphPlatform,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    ctx: CallContext,
    now: DateTime<Utc>,
) -> PlatformFailure {
    let parsed = GraphErrorBody::parse(body);
    let name = platform.name;
    let said = parsed
        .explanation()
        .map(|e| format!(" ({e})"))
        .unwrap_or_default();
    let action = ctx.action;
    let code = parsed.error.code;
    let subcode = parsed.error.error_subcode;
    let code_name = parsed.code_name(status);
    let failure = |class: ErrorClass, message: String| {
        let failure = PlatformFailure::new(class, code_name.clone(), message);
        match (class, not_before(headers, now)) {
            (ErrorClass::RateLimited, Some(at)) => failure.not_before(at),
            _ => failure,
        }
    };

    if let Some((class, advice)) = subcode.and_then(instagram_subcode) {
        return failure(class, format!("{name} refused to {action}: {advice}{said}"));
    }
    if code == Some(190) || status == 401 {
        let why = match subcode {
            Some(458) => "Herald was removed from the account's apps",
            Some(459) => "the account is checkpointed: sign in on Facebook to unlock it",
            Some(460) => "the Facebook password changed",
            Some(464) => "the Facebook account is not confirmed",
            Some(492) => "the person who connected it no longer has a role on the Page",
            Some(463) => "the token expired",
            _ => "the token is invalid or expired",
        };
        let needs_person = matches!(subcode, Some(458 | 459 | 460 | 464 | 492));
        return match ctx.kind {
            CallKind::Api if !needs_person => failure(
                ErrorClass::Auth,
                format!("{name} did not accept the access token to {action} ({why}); Herald renews it and tries again"),
            ),
            CallKind::Api | CallKind::Refresh => failure(
                ErrorClass::ReauthorizationRequired,
                format!("{name} refused the connection's token ({why}){said}; {}", platform.reconnect),
            ),
            CallKind::Code => failure(
                ErrorClass::Permanent,
                format!("{name} refused the token it had just issued ({why}){said}; start connecting again"),
            ),
        };
    }
    if status == 429 || matches!(code, Some(4 | 17 | 32 | 613 | 80001 | 80002)) {
        return failure(
            ErrorClass::RateLimited,
            format!("{name}'s rate limit is used up{said}; Herald waits before trying to {action} again"),
        );
    }
    if status >= 500 || matches!(code, Some(1 | 2 | -1 | -2)) || parsed.error.is_transient {
        return failure(
            ErrorClass::Retryable,
            format!("{name} failed to {action} (HTTP {status}){said}; Herald will try again"),
        );
    }
    if code == Some(6000) {
        return failure(
            ErrorClass::Retryable,
            format!("{name} had a problem receiving the video{said}; Herald resumes the upload"),
        );
    }
    if code == Some(101) {
        return failure(
            ErrorClass::Permanent,
            format!("{name} refused Herald's app credentials{said}: check {} against the app in Meta's developer portal", platform.credentials),
        );
    }
    if ctx.kind == CallKind::Refresh {
        return failure(
            ErrorClass::ReauthorizationRequired,
            format!(
                "{name} refused to renew the connection's token (HTTP {status}){said}; {}",
                platform.reconnect
            ),
        );
    }
    if matches!(code, Some(10 | 200..=299)) || status == 403 {
        return failure(
            ErrorClass::Permanent,
            format!("{name} refused to {action}{said}. The connection needs the {} permissions and a Page role that can create content: {} and allow them", platform.permissions, platform.reconnect),
        );
    }
    if code == Some(368) {
        return failure(
            ErrorClass::Permanent,
            format!("{name} blocked the post as abusive or against its Community Standards{said}; change the post"),
        );
    }
    if code == Some(506) {
        return failure(
            ErrorClass::Permanent,
            format!("{name} refused a duplicate of a recent post{said}; change the text"),
        );
    }
    if matches!(code, Some(324 | 351 | 352 | 1_363_008)) {
        return failure(
            ErrorClass::Permanent,
            format!("{name} could not use the media{said}; check that each URL is public and serves a supported image (JPEG, PNG, GIF, BMP) or video (MP4, MOV)"),
        );
    }
    let hint = match ctx.kind {
        CallKind::Code => {
            "; authorization codes are single-use and short-lived: start connecting again"
        }
        _ => "; check the post against the platform's rules",
    };
    failure(
        ErrorClass::Permanent,
        format!("{name} rejected the request to {action} (HTTP {status}){said}{hint}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use reqwest::header::HeaderValue;

    const IG: GraphPlatform = GraphPlatform {
        name: "Instagram",
        permissions: "instagram_basic and instagram_content_publish",
        reconnect: "connect Instagram again",
        credentials: "INSTAGRAM_CLIENT_ID and INSTAGRAM_CLIENT_SECRET",
    };
    const PUBLISH: CallContext = CallContext::api("publish the post");

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn body(code: i64, subcode: Option<i64>) -> String {
        let sub = subcode.map_or(String::new(), |s| format!(r#","error_subcode":{s}"#));
        format!(
            r#"{{"error":{{"message":"Something","type":"OAuthException","code":{code}{sub},"fbtrace_id":"Ab"}}}}"#
        )
    }

    fn run(status: u16, code: i64, subcode: Option<i64>, ctx: CallContext) -> PlatformFailure {
        classify(
            &IG,
            status,
            &HeaderMap::new(),
            body(code, subcode).as_bytes(),
            ctx,
            now(),
        )
    }

    #[test]
    fn every_documented_instagram_subcode_has_a_class() {
        use ErrorClass::*;
        for (code, subcode, class) in [
            (-2, 2_207_003, Retryable),
            (-2, 2_207_020, Retryable),
            (-1, 2_207_001, Retryable),
            (-1, 2_207_032, Retryable),
            (-1, 2_207_053, Retryable),
            (1, 2_207_057, Permanent),
            (4, 2_207_051, Permanent),
            (9, 2_207_042, RateLimited),
            (36000, 2_207_004, Permanent),
            (9007, 2_207_027, Retryable),
            (9004, 2_207_052, Permanent),
            (352, 2_207_026, Permanent),
            (25, 2_207_050, Permanent),
            (100, 2_207_028, Permanent),
            (36001, 2_207_005, Permanent),
        ] {
            let f = run(400, code, Some(subcode), PUBLISH);
            assert_eq!(f.class, class, "{code}/{subcode}: {}", f.message);
            assert_eq!(f.code, format!("graph_{code}_{subcode}"));
            assert!(
                f.message
                    .starts_with("Instagram refused to publish the post: "),
                "{}",
                f.message
            );
        }
    }

    #[test]
    fn graph_codes_are_classified() {
        use ErrorClass::*;
        for code in [4, 17, 32, 613, 80001, 80002] {
            assert_eq!(run(400, code, None, PUBLISH).class, RateLimited, "{code}");
        }
        assert_eq!(run(429, 100, None, PUBLISH).class, RateLimited);
        assert_eq!(run(400, 190, Some(463), PUBLISH).class, Auth);
        assert_eq!(run(400, 190, None, PUBLISH).class, Auth);
        assert_eq!(
            run(400, 190, Some(460), PUBLISH).class,
            ReauthorizationRequired
        );
        assert_eq!(
            run(400, 190, Some(458), PUBLISH).class,
            ReauthorizationRequired
        );
        assert_eq!(
            run(400, 190, Some(463), CallContext::REFRESH).class,
            ReauthorizationRequired
        );
        assert_eq!(
            run(400, 100, None, CallContext::REFRESH).class,
            ReauthorizationRequired
        );
        assert_eq!(run(400, 190, None, CallContext::CODE).class, Permanent);
        assert_eq!(run(403, 10, None, PUBLISH).class, Permanent);
        assert_eq!(run(403, 200, None, PUBLISH).class, Permanent);
        assert_eq!(run(400, 368, None, PUBLISH).class, Permanent);
        assert_eq!(run(400, 100, None, PUBLISH).class, Permanent);
        assert_eq!(run(500, 1, None, PUBLISH).class, Retryable);
        assert_eq!(run(400, 2, None, PUBLISH).class, Retryable);
        assert_eq!(run(503, 0, None, PUBLISH).class, Retryable);
        assert_eq!(run(400, 6000, Some(1_363_037), PUBLISH).class, Retryable);
        assert_eq!(run(400, 101, None, CallContext::CODE).class, Permanent);
        assert_eq!(run(400, 324, None, PUBLISH).class, Permanent);
    }

    #[test]
    fn messages_say_what_to_do_and_rate_limits_say_when() {
        let f = run(403, 10, None, PUBLISH);
        assert!(
            f.message.contains("instagram_content_publish"),
            "{}",
            f.message
        );
        assert!(
            f.message.contains("connect Instagram again"),
            "{}",
            f.message
        );
        let f = run(400, 190, Some(460), PUBLISH);
        assert!(f.message.contains("password changed"), "{}", f.message);
        let mut h = HeaderMap::new();
        h.insert(
            "x-business-use-case-usage",
            HeaderValue::from_static(
                r#"{"1784":[{"type":"instagram","call_count":100,"total_cputime":1,"total_time":1,"estimated_time_to_regain_access":3}]}"#,
            ),
        );
        let f = classify(&IG, 400, &h, body(80002, None).as_bytes(), PUBLISH, now());
        assert_eq!(f.not_before, Some(now() + TimeDelta::minutes(3)));
        let f = classify(&IG, 400, &HeaderMap::new(), b"not json", PUBLISH, now());
        assert_eq!(
            (f.class, f.code.as_str()),
            (ErrorClass::Permanent, "http_400")
        );
    }
}
