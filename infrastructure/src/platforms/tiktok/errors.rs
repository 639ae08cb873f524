//! TikTok's error envelope and fail reasons, and how each is classified (platform-facts §2.2,
//! §2.3, §2.6, §2.7; ARCHITECTURE invariant 7). Messages say what to do; they never carry a
//! token.
use crate::text::truncate;
use chrono::{DateTime, TimeDelta, Utc};
use herald_domain::{ErrorClass, PlatformFailure};
use serde::Deserialize;

/// TikTok sends no Retry-After; its request windows are one minute long.
const RATE_WINDOW_SECS: i64 = 60;

/// What the failed call was doing: completes "could not ...".
#[derive(Debug, Clone, Copy)]
pub struct CallContext {
    pub action: &'static str,
}

impl CallContext {
    pub const USER_INFO: Self = Self::new("read the account");
    pub const CREATOR_INFO: Self = Self::new("read the creator's posting settings");
    pub const VIDEO_INIT: Self = Self::new("start the video post");
    pub const INBOX_INIT: Self = Self::new("send the video to the TikTok inbox");
    pub const CONTENT_INIT: Self = Self::new("start the photo post");
    pub const UPLOAD: Self = Self::new("upload the video");
    pub const STATUS: Self = Self::new("check the post's status");
    pub const VIDEO_LIST: Self = Self::new("look the post up among the account's public videos");

    const fn new(action: &'static str) -> Self {
        Self { action }
    }
}

/// `{"data": ..., "error": {"code", "message", "log_id"}}`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Envelope<T> {
    pub data: Option<T>,
    #[serde(default)]
    pub error: ApiError,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct ApiError {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub log_id: String,
}

impl ApiError {
    pub fn parse(body: &[u8]) -> Self {
        serde_json::from_slice::<Envelope<serde_json::Value>>(body)
            .map(|e| e.error)
            .unwrap_or_default()
    }

    /// `: <message> (log_id ...)`, for support requests to TikTok.
    fn said(&self) -> String {
        let message = self.message.trim();
        let message = if message.is_empty() {
            String::new()
        } else {
            format!(": {}", truncate(message, 300))
        };
        if self.log_id.is_empty() {
            message
        } else {
            format!("{message} (TikTok log_id {})", self.log_id)
        }
    }
}

/// Classifies a TikTok API error (any HTTP status; creator_info reports spam errors with 200).
pub(crate) fn classify(
    status: u16,
    body: &[u8],
    ctx: CallContext,
    now: DateTime<Utc>,
) -> PlatformFailure {
    let error = ApiError::parse(body);
    classify_code(status, &error, ctx, now)
}

pub(crate) fn classify_code(
    status: u16,
    error: &ApiError,
    ctx: CallContext,
    now: DateTime<Utc>,
) -> PlatformFailure {
    let action = ctx.action;
    let said = error.said();
    let code = if error.code.is_empty() || error.code == "ok" {
        format!("http_{status}")
    } else {
        error.code.clone()
    };
    let permanent =
        |message: String| PlatformFailure::new(ErrorClass::Permanent, code.clone(), message);
    match error.code.as_str() {
        "access_token_invalid" => PlatformFailure::new(
            ErrorClass::Auth,
            code,
            format!("TikTok did not accept the access token to {action} (expired or revoked){said}; Herald refreshes it and tries again"),
        ),
        "scope_not_authorized" | "scope_permission_missed" => PlatformFailure::new(
            ErrorClass::ReauthorizationRequired,
            code,
            format!("TikTok refused to {action}: the account did not grant the permission it needs (video.publish for Direct Post, video.upload for the inbox, user.info.profile for the username){said}; reconnect the account and approve every permission"),
        ),
        "rate_limit_exceeded" => PlatformFailure::new(
            ErrorClass::RateLimited,
            code,
            format!("TikTok's per-minute request limit was exceeded while trying to {action}{said}; Herald waits a minute before trying again"),
        )
        .not_before(now + TimeDelta::seconds(RATE_WINDOW_SECS)),
        "internal_error" => PlatformFailure::new(
            ErrorClass::Retryable,
            code,
            format!("TikTok failed to {action} (HTTP {status}){said}; Herald will try again"),
        ),
        "invalid_param" | "invalid_params" => permanent(format!(
            "TikTok refused the request to {action} as invalid{said}; check the post's text, title, media and options.tiktok against TikTok's rules"
        )),
        "invalid_file_upload" => permanent(format!(
            "TikTok refused the uploaded file{said}; use an MP4, WebM or MOV video of at most 4 GB"
        )),
        "spam_risk_too_many_posts" => permanent(format!(
            "TikTok's daily limit of posts through the API is reached for this account{said}; publish again tomorrow"
        )),
        "spam_risk_user_banned_from_posting" => permanent(format!(
            "TikTok has banned this account from making new posts{said}; the account owner must resolve it in the TikTok app"
        )),
        "reached_active_user_cap" => permanent(format!(
            "TikTok's daily cap on users posting through this app is reached{said}: unaudited apps may post for 5 users in 24 hours; try tomorrow or have the app audited in TikTok's developer portal"
        )),
        "unaudited_client_can_only_post_to_private_accounts" => permanent(format!(
            "This TikTok app is not audited yet, so it may only post privately{said}: set options.tiktok.privacy_level to SELF_ONLY, or have the app audited in TikTok's developer portal"
        )),
        "url_ownership_unverified" => permanent(format!(
            "TikTok will not pull media from this URL{said}: verify its domain or URL prefix for the app in TikTok's developer portal, or remove it from TIKTOK_PULL_FROM_URL_PREFIXES so Herald uploads the file instead"
        )),
        "privacy_level_option_mismatch" => permanent(format!(
            "options.tiktok.privacy_level is not one the creator may use{said}; choose one of the account's privacy options (SELF_ONLY always works)"
        )),
        "app_version_check_failed" => permanent(format!(
            "TikTok cannot send photo drafts to this account's inbox{said}: the account owner must update the TikTok app (31.8 or later)"
        )),
        "invalid_publish_id" | "token_not_authorized_for_specified_publish_id" => permanent(format!(
            "TikTok does not know this post for the account{said}; publish it again"
        )),
        "publish_not_cancellable" => permanent(format!(
            "TikTok can no longer cancel this post{said}"
        )),
        // Reported by the caller with the quota it counted (see `pending_share_limit`).
        "spam_risk_too_many_pending_share" => PlatformFailure::new(
            ErrorClass::RateLimited,
            code,
            format!("TikTok allows at most 5 pending inbox shares in 24 hours{said}; the account owner must finish or delete drafts in the TikTok inbox"),
        )
        .not_before(now + TimeDelta::hours(24)),
        _ if status == 429 => PlatformFailure::new(
            ErrorClass::RateLimited,
            code,
            format!("TikTok is rate-limiting requests to {action}{said}; Herald waits before trying again"),
        )
        .not_before(now + TimeDelta::seconds(RATE_WINDOW_SECS)),
        _ if status >= 500 => PlatformFailure::new(
            ErrorClass::Retryable,
            code,
            format!("TikTok failed to {action} (HTTP {status}){said}; Herald will try again"),
        ),
        _ if status == 401 => PlatformFailure::new(
            ErrorClass::Auth,
            code,
            format!("TikTok did not accept the access token to {action}{said}; Herald refreshes it and tries again"),
        ),
        _ => permanent(format!(
            "TikTok refused to {action} (HTTP {status}, {}){said}",
            if error.code.is_empty() { "no error code" } else { error.code.as_str() }
        )),
    }
}

/// The refusal of an inbox upload because five shares are pending, with what Herald counted:
/// `reset` is when the oldest share Herald sent within 24 hours stops counting, if it knows.
pub(crate) fn pending_share_limit(
    error: &ApiError,
    limit: u32,
    reset: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> PlatformFailure {
    let reset_at = reset.unwrap_or_else(|| now + TimeDelta::hours(24));
    let when = match reset {
        Some(at) => format!(
            "the oldest share Herald sent stops counting at {}",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        None => format!(
            "Herald has no record of when the oldest pending share was made (it may come from another app), so the quota is back by {} at the latest",
            reset_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
    };
    PlatformFailure::new(
        ErrorClass::RateLimited,
        "spam_risk_too_many_pending_share",
        format!(
            "TikTok allows at most {limit} pending inbox shares in any 24 hours and this account has {limit}: 0 of {limit} left; {when}{}. The account owner can free the quota sooner by finishing or deleting drafts in the TikTok inbox; Herald tries again at {}",
            error.said(),
            reset_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
    )
    .not_before(reset_at)
}

/// Classifies a publish TikTok reports `FAILED` (platform-facts §2.6). `max_duration_sec` is
/// the creator's limit, if known.
pub(crate) fn fail_reason(reason: &str, max_duration_sec: Option<u64>) -> PlatformFailure {
    let permanent = |message: String| PlatformFailure::new(ErrorClass::Permanent, reason, message);
    match reason {
        "internal" => PlatformFailure::new(
            ErrorClass::Retryable,
            reason,
            "TikTok failed to process the post (internal error); Herald will publish it again",
        ),
        "auth_removed" => PlatformFailure::new(
            ErrorClass::ReauthorizationRequired,
            reason,
            "the account removed Herald's access on TikTok while the post was processing; reconnect the account, then publish again",
        ),
        "file_format_check_failed" => permanent(
            "TikTok could not read the video: use MP4 (recommended), WebM or MOV encoded with H.264, H.265, VP8 or VP9".into(),
        ),
        "duration_check_failed" => permanent(match max_duration_sec {
            Some(max) => format!("the video is longer than this account may post ({max} seconds); shorten it"),
            None => "the video is longer than this account may post (at most 10 minutes through the API); shorten it".into(),
        }),
        "frame_rate_check_failed" => permanent(
            "TikTok refused the video's frame rate: use 23 to 60 frames per second".into(),
        ),
        "picture_size_check_failed" => permanent(
            "TikTok refused the picture size: videos need 360 to 4096 pixels on each side, photos at most 1080p".into(),
        ),
        "video_pull_failed" | "photo_pull_failed" => permanent(
            "TikTok could not download the media from its URL: it must be https, publicly reachable without redirects for an hour, and under a verified domain or URL prefix; check the URL and publish again".into(),
        ),
        "publish_cancelled" => permanent("the post was cancelled before TikTok published it".into()),
        "spam_risk_too_many_posts" => permanent(
            "TikTok's daily limit of posts through the API is reached for this account; publish again tomorrow".into(),
        ),
        "spam_risk_user_banned_from_posting" => permanent(
            "TikTok has banned this account from making new posts; the account owner must resolve it in the TikTok app".into(),
        ),
        "spam_risk_text" => permanent(
            "TikTok refused the post's text as spam; change the caption or title and publish again".into(),
        ),
        "spam_risk" => permanent(
            "TikTok refused the post as spam; change its content before publishing again".into(),
        ),
        other => permanent(format!("TikTok could not publish the post ({other})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: &str) -> Vec<u8> {
        serde_json::json!({"data": {}, "error": {"code": code, "message": "m", "log_id": "L1"}})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn documented_codes_are_classified() {
        let now = Utc::now();
        let ctx = CallContext::VIDEO_INIT;
        let class = |status, code: &str| classify(status, &body(code), ctx, now).class;
        assert_eq!(class(401, "access_token_invalid"), ErrorClass::Auth);
        assert_eq!(
            class(401, "scope_not_authorized"),
            ErrorClass::ReauthorizationRequired
        );
        assert_eq!(class(429, "rate_limit_exceeded"), ErrorClass::RateLimited);
        assert_eq!(class(500, "internal_error"), ErrorClass::Retryable);
        assert_eq!(class(400, "invalid_param"), ErrorClass::Permanent);
        assert_eq!(class(400, "invalid_params"), ErrorClass::Permanent);
        for code in [
            "spam_risk_too_many_posts",
            "spam_risk_user_banned_from_posting",
            "reached_active_user_cap",
            "unaudited_client_can_only_post_to_private_accounts",
            "url_ownership_unverified",
            "privacy_level_option_mismatch",
        ] {
            assert_eq!(class(403, code), ErrorClass::Permanent, "{code}");
            assert_eq!(
                class(200, code),
                ErrorClass::Permanent,
                "{code} with HTTP 200"
            );
        }
        assert_eq!(
            class(403, "spam_risk_too_many_pending_share"),
            ErrorClass::RateLimited
        );
        assert_eq!(class(502, ""), ErrorClass::Retryable);
        let failure = classify(429, &body("rate_limit_exceeded"), ctx, now);
        assert_eq!(failure.not_before, Some(now + TimeDelta::seconds(60)));
        let failure = classify(403, &body("privacy_level_option_mismatch"), ctx, now);
        assert!(failure.message.contains("log_id L1"), "{}", failure.message);
    }

    #[test]
    fn fail_reasons_are_classified() {
        assert_eq!(fail_reason("internal", None).class, ErrorClass::Retryable);
        assert_eq!(
            fail_reason("auth_removed", None).class,
            ErrorClass::ReauthorizationRequired
        );
        for reason in [
            "file_format_check_failed",
            "duration_check_failed",
            "frame_rate_check_failed",
            "picture_size_check_failed",
            "video_pull_failed",
            "photo_pull_failed",
            "publish_cancelled",
            "spam_risk_too_many_posts",
            "spam_risk_user_banned_from_posting",
            "spam_risk_text",
            "spam_risk",
        ] {
            assert_eq!(
                fail_reason(reason, None).class,
                ErrorClass::Permanent,
                "{reason}"
            );
        }
        assert!(fail_reason("duration_check_failed", Some(180))
            .message
            .contains("180 seconds"));
    }

    #[test]
    fn the_pending_share_refusal_names_the_quota_and_the_reset() {
        let now = Utc::now();
        let reset = now + TimeDelta::hours(3);
        let failure = pending_share_limit(&ApiError::default(), 5, Some(reset), now);
        assert_eq!(failure.class, ErrorClass::RateLimited);
        assert_eq!(failure.not_before, Some(reset));
        assert!(
            failure.message.contains("0 of 5 left"),
            "{}",
            failure.message
        );
        assert!(failure
            .message
            .contains(&reset.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
        let unknown = pending_share_limit(&ApiError::default(), 5, None, now);
        assert!(unknown.message.contains("no record"));
    }
}
