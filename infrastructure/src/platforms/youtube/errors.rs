//! Google's API error bodies and how each YouTube failure is classified (platform-facts §7.6;
//! ARCHITECTURE invariant 7). Every message says what the user can do.
use chrono::{DateTime, Duration, Utc};
use herald_domain::{ErrorClass, PlatformFailure};
use reqwest::header::HeaderMap;
use serde::Deserialize;

use super::quota::next_pacific_midnight;
use crate::platforms::http::retry_after;
use crate::text::truncate;

/// How long a short-term `rateLimitExceeded` without `Retry-After` keeps Herald away.
const SHORT_TERM_BACKOFF_SECS: i64 = 60;
/// `uploadLimitExceeded`: "try again in 24 hours" (YouTube developer news).
const UPLOAD_LIMIT_WAIT_HOURS: i64 = 24;

/// What the failed call was doing.
#[derive(Debug, Clone, Copy)]
pub struct CallContext {
    /// Completes "could not ...", e.g. "upload the video".
    pub action: &'static str,
}

impl CallContext {
    pub const READ_CHANNEL: Self = Self::new("read the YouTube channel");
    pub const OPEN_UPLOAD: Self = Self::new("start the video upload");
    pub const UPLOAD: Self = Self::new("upload the video");
    pub const PROCESSING: Self = Self::new("check the video's processing");
    pub const THUMBNAIL: Self = Self::new("set the video's thumbnail");
    pub const LIST_UPLOADS: Self = Self::new("list the channel's uploads");

    const fn new(action: &'static str) -> Self {
        Self { action }
    }
}

/// `{"error":{"code","message","errors":[{"message","domain","reason"}],"status"}}`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct GoogleErrorBody {
    #[serde(default)]
    pub error: GoogleError,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct GoogleError {
    pub message: Option<String>,
    #[serde(default)]
    pub errors: Vec<GoogleErrorItem>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct GoogleErrorItem {
    pub reason: Option<String>,
    pub domain: Option<String>,
}

impl GoogleErrorBody {
    pub fn parse(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }

    /// The first error's `reason` (`quotaExceeded`, `invalidTitle`, ...).
    pub fn reason(&self) -> &str {
        self.error
            .errors
            .iter()
            .find_map(|e| e.reason.as_deref())
            .unwrap_or("")
    }

    fn domain(&self) -> &str {
        self.error
            .errors
            .iter()
            .find_map(|e| e.domain.as_deref())
            .unwrap_or("")
    }

    /// Google's message, without the HTML Google puts into some of them.
    fn explanation(&self) -> Option<String> {
        let message = self.error.message.as_deref()?.trim();
        let plain = strip_tags(message);
        (!plain.is_empty()).then(|| truncate(&plain, 300))
    }
}

/// Whether a body is Google's error envelope.
pub(crate) fn is_error_body(body: &serde_json::Value) -> bool {
    body.get("error").is_some_and(|e| e.is_object())
}

/// Advice for the metadata reasons of `videos.insert`.
fn metadata_advice(reason: &str) -> Option<&'static str> {
    Some(match reason {
        "invalidTitle" => "the title is empty, longer than 100 characters or contains < or >: change the title",
        "invalidDescription" => "the description is longer than 5000 bytes or contains < or >: shorten or change the text",
        "invalidTags" => "the tags are too long together (500 characters at most) or contain < or >: shorten the tags",
        "invalidCategoryId" => "options.youtube.category_id is not a category videos can be assigned to: use e.g. 22 (People & Blogs)",
        "invalidPublishAt" => "a scheduled publishing time needs privacy private and a time in the future",
        "forbiddenPrivacySetting" => "the privacy setting is not allowed for this video: choose public, unlisted or private",
        "forbiddenLicenseSetting" => "the licence is not allowed for this video",
        "invalidVideoMetadata" => "YouTube refused the video's metadata: check title, description, tags and options",
        "mediaBodyRequired" => "the video file is empty: check the media URL",
        "defaultLanguageNotSet" => "localized metadata needs a default language",
        "invalidRecordingDetails" => "the recording details are invalid",
        "invalidFilename" => "the file name is invalid",
        "invalidImage" => "the thumbnail must be a JPEG or PNG image of at most 2 MB: check options.youtube.thumbnail_url",
        _ => return None,
    })
}

/// Advice for account problems (errors page, `forbidden (403)` family).
fn account_advice(reason: &str) -> Option<&'static str> {
    Some(match reason {
        "youtubeSignupRequired" | "authenticatedUserNotChannel" | "channelNotFound" => {
            "the connected Google account has no YouTube channel: create one at youtube.com, then reconnect the account"
        }
        "authenticatedUserAccountClosed" | "channelClosed" | "uploaderAccountClosed" => {
            "the YouTube channel has been closed: connect another channel"
        }
        "authenticatedUserAccountSuspended" | "channelSuspended" | "uploaderAccountSuspended" => {
            "the YouTube channel is suspended: resolve it with YouTube, then publish again"
        }
        "accountDelegationForbidden" | "cmsUserAccountNotFound" => {
            "the connected account may not act for this channel: reconnect with the channel's owner account"
        }
        "insufficientCapabilities" => {
            "the channel lacks the capability this needs (e.g. custom thumbnails need a verified channel): verify the channel at youtube.com/verify"
        }
        _ => return None,
    })
}

/// Classifies a YouTube API refusal from its status, headers and body.
pub(crate) fn classify(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    ctx: CallContext,
    now: DateTime<Utc>,
) -> PlatformFailure {
    let parsed = GoogleErrorBody::parse(body);
    let reason = parsed.reason().to_owned();
    let domain = parsed.domain().to_owned();
    let action = ctx.action;
    let code = if reason.is_empty() {
        format!("http_{status}")
    } else {
        format!("http_{status}_{reason}")
    };
    let said = parsed
        .explanation()
        .map(|e| format!(" (YouTube: {e})"))
        .unwrap_or_default();
    let failure = |class: ErrorClass, message: String| PlatformFailure::new(class, &code, message);

    match reason.as_str() {
        "quotaExceeded" | "dailyLimitExceeded" => {
            let until = next_pacific_midnight(now);
            return failure(
                ErrorClass::RateLimited,
                format!(
                    "could not {action}: the Google project's daily YouTube Data API quota is used up{said}; it resets at midnight Pacific time ({}) and Herald waits until then. To publish more a day, request a higher quota in the Google Cloud console",
                    until.to_rfc3339()
                ),
            )
            .not_before(until);
        }
        "rateLimitExceeded" | "userRateLimitExceeded" | "uploadRateLimitExceeded" => {
            let until = retry_after(headers, now)
                .unwrap_or(now + Duration::seconds(SHORT_TERM_BACKOFF_SECS));
            return failure(
                ErrorClass::RateLimited,
                format!("could not {action}: YouTube is rate-limiting requests{said}; Herald will try again later"),
            )
            .not_before(until);
        }
        "uploadLimitExceeded" => {
            return failure(
                ErrorClass::RateLimited,
                format!(
                    "could not {action}: the channel has reached the number of videos YouTube lets it upload in 24 hours{said}; Herald tries again in 24 hours"
                ),
            )
            .not_before(now + Duration::hours(UPLOAD_LIMIT_WAIT_HOURS));
        }
        "insufficientPermissions" | "insufficientPermission" => {
            return failure(
                ErrorClass::ReauthorizationRequired,
                format!(
                    "could not {action}: the connection lacks a YouTube permission Herald needs{said}; reconnect the account and allow uploading and reading the channel"
                ),
            );
        }
        _ => {}
    }
    if let Some(advice) = account_advice(&reason) {
        return failure(
            ErrorClass::Permanent,
            format!("could not {action}: {advice}{said}"),
        );
    }
    if status == 401 {
        return failure(
            ErrorClass::Auth,
            format!("could not {action}: YouTube refused the access token{said}; Herald refreshes it and tries again"),
        );
    }
    if status == 429 {
        let until =
            retry_after(headers, now).unwrap_or(now + Duration::seconds(SHORT_TERM_BACKOFF_SECS));
        return failure(
            ErrorClass::RateLimited,
            format!("could not {action}: YouTube is rate-limiting requests{said}; Herald will try again later"),
        )
        .not_before(until);
    }
    if status >= 500 || status == 408 {
        return failure(
            ErrorClass::Retryable,
            format!("could not {action}: YouTube failed with HTTP {status}{said}; Herald will try again"),
        );
    }
    if let Some(advice) = metadata_advice(&reason) {
        return failure(
            ErrorClass::Permanent,
            format!("could not {action}: {advice}{said}"),
        );
    }
    let advice = match (status, reason.as_str()) {
        (413, _) | (_, "uploadTooLarge" | "mediaBodyTooLarge") => {
            "the file is larger than YouTube accepts: use a smaller file"
        }
        (_, "badContent") => "YouTube does not accept this media type: upload a video file",
        (404, "videoNotFound") => "the video no longer exists on YouTube (deleted?)",
        (404, "playlistNotFound") => "the channel's uploads playlist was not found",
        (403, "forbidden") => {
            "YouTube refused the request for this channel: check the channel's status and permissions at youtube.com"
        }
        (400, _) => "YouTube refused the request as invalid: check the post's title, text and options",
        _ => "YouTube refused the request",
    };
    let domain_note = if domain.is_empty() || reason.is_empty() {
        String::new()
    } else {
        format!(" [{domain}/{reason}]")
    };
    failure(
        ErrorClass::Permanent,
        format!("could not {action}: {advice}{said}{domain_note}"),
    )
}

/// A request that got no response.
pub(crate) fn transport_failure(error: &reqwest::Error, ctx: CallContext) -> PlatformFailure {
    crate::platforms::http::default_transport_failure("YouTube", ctx.action, error)
}

/// A processed video's terminal failure (`uploadStatus` failed or rejected).
pub(crate) fn processing_failure(
    upload_status: &str,
    failure_reason: Option<&str>,
    rejection_reason: Option<&str>,
) -> PlatformFailure {
    if upload_status == "rejected" {
        let reason = rejection_reason.unwrap_or("unknown");
        let advice = match reason {
            "copyright" | "claim" => {
                "it infringes copyright or matches a claim: upload only content you own"
            }
            "duplicate" => "it duplicates a video already on the channel",
            "inappropriate" | "termsOfUse" => {
                "it violates YouTube's community guidelines or terms of use: change the video"
            }
            "length" => {
                "it is longer than the channel may upload: verify the channel or shorten the video"
            }
            "trademark" | "legal" => "of a trademark or legal complaint",
            "uploaderAccountClosed" | "uploaderAccountSuspended" => {
                "the channel is closed or suspended"
            }
            _ => "of YouTube's checks",
        };
        return PlatformFailure::new(
            ErrorClass::Permanent,
            format!("rejected_{reason}"),
            format!("YouTube rejected the video because {advice} (rejectionReason {reason})"),
        );
    }
    let reason = failure_reason.unwrap_or("unknown");
    let advice = match reason {
        "codec" => {
            "its codec is not supported: re-encode it as H.264 video with AAC audio in an MP4"
        }
        "conversion" => "it could not be converted: re-encode it as H.264/AAC MP4",
        "invalidFile" => "the file is not a valid video: check the media URL",
        "emptyFile" => "the file is empty: check the media URL",
        "tooSmall" => "the file is too small to be a video: check the media URL",
        "uploadAborted" => "the upload was aborted: publish again",
        _ => "YouTube could not process it",
    };
    let class = if reason == "uploadAborted" {
        ErrorClass::Retryable
    } else {
        ErrorClass::Permanent
    };
    PlatformFailure::new(
        class,
        format!("processing_failed_{reason}"),
        format!("YouTube could not process the video: {advice} (failureReason {reason})"),
    )
}

/// `text` without HTML tags (Google links the word "quota" in its quota message).
fn strip_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(status: u16, reason: &str, domain: &str, message: &str) -> Vec<u8> {
        json!({"error": {"code": status, "message": message,
            "errors": [{"message": message, "domain": domain, "reason": reason}]}})
        .to_string()
        .into_bytes()
    }

    fn classify_now(status: u16, reason: &str, domain: &str) -> PlatformFailure {
        classify(
            status,
            &HeaderMap::new(),
            &body(status, reason, domain, "m"),
            CallContext::UPLOAD,
            DateTime::parse_from_rfc3339("2025-01-15T12:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        )
    }

    #[test]
    fn quota_waits_until_midnight_pacific_and_strips_html() {
        let f = classify(
            403,
            &HeaderMap::new(),
            &body(
                403,
                "quotaExceeded",
                "youtube.quota",
                "The request cannot be completed because you have exceeded your <a href=\"/youtube/v3/getting-started#quota\">quota</a>.",
            ),
            CallContext::OPEN_UPLOAD,
            DateTime::parse_from_rfc3339("2025-01-15T12:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        );
        assert_eq!(f.class, ErrorClass::RateLimited);
        assert_eq!(f.code, "http_403_quotaExceeded");
        assert_eq!(
            f.not_before.unwrap().to_rfc3339(),
            "2025-01-16T08:00:00+00:00"
        );
        assert!(f.message.contains("exceeded your quota."), "{}", f.message);
        assert!(f.message.contains("Google Cloud console"));
    }

    #[test]
    fn each_documented_reason_has_its_class() {
        let cases = [
            (401, "authError", "global", ErrorClass::Auth),
            (
                401,
                "youtubeSignupRequired",
                "global",
                ErrorClass::Permanent,
            ),
            (
                403,
                "insufficientPermissions",
                "global",
                ErrorClass::ReauthorizationRequired,
            ),
            (
                403,
                "rateLimitExceeded",
                "usageLimits",
                ErrorClass::RateLimited,
            ),
            (
                429,
                "rateLimitExceeded",
                "usageLimits",
                ErrorClass::RateLimited,
            ),
            (
                400,
                "uploadLimitExceeded",
                "youtube.video",
                ErrorClass::RateLimited,
            ),
            (400, "invalidTitle", "youtube.video", ErrorClass::Permanent),
            (
                400,
                "invalidCategoryId",
                "youtube.video",
                ErrorClass::Permanent,
            ),
            (
                403,
                "channelSuspended",
                "youtube.channel",
                ErrorClass::Permanent,
            ),
            (403, "forbidden", "youtube.thumbnail", ErrorClass::Permanent),
            (
                404,
                "videoNotFound",
                "youtube.thumbnail",
                ErrorClass::Permanent,
            ),
            (413, "uploadTooLarge", "global", ErrorClass::Permanent),
            (500, "backendError", "global", ErrorClass::Retryable),
            (503, "backendError", "global", ErrorClass::Retryable),
        ];
        for (status, reason, domain, class) in cases {
            let f = classify_now(status, reason, domain);
            assert_eq!(f.class, class, "{status} {reason}: {f:?}");
            assert!(
                f.message.starts_with("could not upload the video"),
                "{}",
                f.message
            );
        }
        let f = classify_now(400, "uploadLimitExceeded", "youtube.video");
        assert_eq!(
            f.not_before.unwrap().to_rfc3339(),
            "2025-01-16T12:00:00+00:00"
        );
        assert!(classify_now(401, "youtubeSignupRequired", "global")
            .message
            .contains("create one at youtube.com"));
    }

    #[test]
    fn processing_failures_say_what_to_do() {
        let f = processing_failure("failed", Some("codec"), None);
        assert_eq!(f.class, ErrorClass::Permanent);
        assert!(f.message.contains("H.264"));
        let f = processing_failure("rejected", None, Some("duplicate"));
        assert_eq!(f.code, "rejected_duplicate");
        assert_eq!(
            processing_failure("failed", Some("uploadAborted"), None).class,
            ErrorClass::Retryable
        );
    }
}
