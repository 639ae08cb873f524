//! The Display API's `POST /v2/video/list/`: "the metadata of a TikTok user's recently uploaded
//! videos", public ones only (scope `video.list`, "Read a user's public videos on TikTok";
//! https://developers.tiktok.com/doc/display-api-overview/). Herald reads it for one purpose:
//! finding a pulled public Direct Post whose init answer was lost (see `publish`).
//!
//! Request: `?fields=...` in the query, `{"max_count": 1..=20, "cursor": <ms>}` in the body;
//! answer `{"data": {"videos": [...], "cursor", "has_more"}}`, newest first. A video carries `id`
//! ("also called item_id"), `create_time` (UTC Unix seconds when posted), `share_url`, `title`
//! and `video_description` (each at most 150 characters;
//! https://developers.tiktok.com/doc/tiktok-api-v2-video-object).
use chrono::{DateTime, TimeDelta, Utc};
use herald_domain::PlatformFailure;
use reqwest::header::CONTENT_TYPE;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::errors::CallContext;
use super::TiktokAdapter;
use crate::platforms::RateLimitGate;
use crate::secret::Secret;

const FIELDS: &str = "id,create_time,title,video_description,share_url";
/// `max_count` may be 1 to 20.
const PAGE_SIZE: u32 = 20;
/// Pages read at most: a hundred public videos posted since the post was sent.
const MAX_PAGES: usize = 5;
/// How far TikTok's clock may lag Herald's when comparing `create_time` with the send time.
const CLOCK_SKEW_SECS: i64 = 120;
/// Longest `title` / `video_description` the Video Object holds: a longer caption comes back cut.
const LISTED_TEXT_MAX: usize = 150;

#[derive(Debug, Deserialize)]
struct VideoPage {
    #[serde(default)]
    videos: Vec<ListedVideo>,
    cursor: Option<i64>,
    #[serde(default)]
    has_more: bool,
}

/// One video of the list.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct ListedVideo {
    #[serde(deserialize_with = "id_text")]
    pub id: String,
    #[serde(default)]
    create_time: i64,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    video_description: Option<String>,
    pub share_url: Option<String>,
}

impl ListedVideo {
    fn carries(&self, caption: &str) -> bool {
        [&self.video_description, &self.title]
            .into_iter()
            .flatten()
            .any(|listed| caption_matches(listed, caption))
    }
}

/// The id is documented as a string; a number is taken too.
fn id_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::String(id) => Ok(id),
        Value::Number(id) => Ok(id.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "a video id must be a string, not {other}"
        ))),
    }
}

impl TiktokAdapter {
    /// The account's public video with `caption` posted at or after `sent_at` (less the clock
    /// skew); the earliest if several match. Reads pages, newest first, until one reaches back
    /// before that time.
    pub(super) async fn find_public_video(
        &self,
        token: &Secret,
        caption: &str,
        sent_at: DateTime<Utc>,
        limits: &dyn RateLimitGate,
    ) -> Result<Option<ListedVideo>, PlatformFailure> {
        let from = (sent_at - TimeDelta::seconds(CLOCK_SKEW_SECS)).timestamp();
        let mut cursor = None;
        let mut found = None;
        for _ in 0..MAX_PAGES {
            let page = self.video_page(token, cursor, limits).await?;
            let reached_before = page.videos.iter().any(|v| v.create_time < from);
            // Newest first: the last match of the page is its earliest.
            if let Some(video) = page
                .videos
                .into_iter()
                .rev()
                .find(|v| v.create_time >= from && v.carries(caption))
            {
                found = Some(video);
            }
            match page.cursor {
                Some(next) if page.has_more && !reached_before => cursor = Some(next),
                _ => break,
            }
        }
        Ok(found)
    }

    /// One page of `video/list` (600 a minute).
    async fn video_page(
        &self,
        token: &Secret,
        cursor: Option<i64>,
        limits: &dyn RateLimitGate,
    ) -> Result<VideoPage, PlatformFailure> {
        let endpoint = "tiktok_video_list";
        self.take_slot(endpoint, self.config.limits.video_list, limits)
            .await?;
        let mut url = self.config.api_url("v2/video/list/");
        url.query_pairs_mut().append_pair("fields", FIELDS);
        let mut body = json!({ "max_count": PAGE_SIZE });
        if let Some(cursor) = cursor {
            body["cursor"] = json!(cursor);
        }
        let request = self
            .api
            .post(url)
            .bearer_auth(token.expose())
            .header(CONTENT_TYPE, "application/json; charset=UTF-8")
            .json(&body);
        self.call_data(endpoint, limits, request, CallContext::VIDEO_LIST)
            .await
    }
}

/// Whether a listed title or description is `caption`, whitespace aside; one cut at TikTok's
/// length limit matches the start of the caption.
fn caption_matches(listed: &str, caption: &str) -> bool {
    let listed_words = normalise(listed);
    let caption_words = normalise(caption);
    if listed_words.is_empty() {
        return false;
    }
    // Bytes are at least as many as characters or UTF-16 units, whichever TikTok counts.
    let cut = listed.len() >= LISTED_TEXT_MAX;
    listed_words == caption_words || (cut && caption_words.starts_with(&listed_words))
}

fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captions_match_whitespace_aside_and_by_prefix_only_when_cut() {
        assert!(caption_matches(
            "Hello  TikTok\n#herald ",
            "Hello TikTok #herald"
        ));
        assert!(!caption_matches("Hello", "Hello TikTok"));
        assert!(!caption_matches("", ""));
        let long = "word ".repeat(60);
        let cut: String = long.chars().take(LISTED_TEXT_MAX).collect();
        assert!(caption_matches(&cut, &long));
        assert!(!caption_matches(&cut, "another caption entirely"));
    }

    #[test]
    fn pages_read_ids_as_strings_or_numbers() {
        let page: VideoPage = serde_json::from_value(json!({
            "videos": [
                {"id": "7300000000000000001", "create_time": 1_700_000_000, "share_url": "https://www.tiktok.com/@a/video/7300000000000000001"},
                {"id": 7_300_000_000_000_000_002u64, "video_description": "hi"}
            ],
            "cursor": 1_700_000_000_000i64,
            "has_more": true
        }))
        .unwrap();
        assert_eq!(page.videos[1].id, "7300000000000000002");
        assert!(page.videos[1].carries("hi"));
        assert!(page.has_more);
    }
}
