//! Where the YouTube adapter sends its requests, its upload chunking and its quota model.
use std::time::Duration;

use url::Url;

use crate::platforms::x::join;
use crate::secret::Secret;

/// Scopes Herald asks Google for: uploading (and setting thumbnails) and reading the channel
/// and its videos (`channels.list`, `videos.list` and `playlistItems.list` do not accept
/// `youtube.upload`; discovery document).
pub const DEFAULT_SCOPES: [&str; 2] = [
    "https://www.googleapis.com/auth/youtube.upload",
    "https://www.googleapis.com/auth/youtube.readonly",
];

/// Google's resumable chunk granularity: every chunk but the last is a multiple of it.
pub const CHUNK_GRANULARITY: usize = 256 * 1024;

/// How `videos.insert` is charged. The documentation changed over time (platform-facts §7.5):
/// long documented as 1600 of the project's 10,000 daily units; newer pages describe a bucket
/// of its own (100 calls a day). Google offers no endpoint to read a project's quota, so it is
/// configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertQuota {
    /// Each insert takes this many units of the daily pool.
    Units(u64),
    /// Inserts have their own daily bucket of this many calls.
    Bucket(u64),
}

/// The project's daily YouTube Data API quota, reset at midnight Pacific time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaConfig {
    /// Units per day for everything but bucketed methods (default 10,000).
    pub daily_units: u64,
    pub insert: InsertQuota,
}

impl Default for QuotaConfig {
    /// The conservative reading: inserts cost 1600 of 10,000 units. If the project is on the
    /// newer buckets, Herald merely under-uses it; the opposite mistake would be refused.
    fn default() -> Self {
        Self {
            daily_units: 10_000,
            insert: InsertQuota::Units(1600),
        }
    }
}

/// Configuration of the YouTube adapter. Every URL is configurable so the same adapter talks
/// to Google or to the sandbox.
#[derive(Debug, Clone)]
pub struct YouTubeConfig {
    /// Base of the Data API and its upload endpoints: `{api_base}/youtube/v3/...` and
    /// `{api_base}/upload/youtube/v3/...`.
    pub api_base: Url,
    pub authorize_url: Url,
    pub token_url: Url,
    pub revoke_url: Url,
    /// The Google Cloud project's OAuth client (a web client: it has a secret).
    pub client_id: String,
    pub client_secret: Secret,
    /// Scopes requested at authorization (default: `DEFAULT_SCOPES`).
    pub scopes: Vec<String>,
    /// Video links are `{watch_url}{video_id}`.
    pub watch_url: String,
    /// Total time allowed for one API request.
    pub request_timeout: Duration,
    /// Which media URLs may be downloaded (SSRF protection).
    pub media_policy: crate::media_source::MediaUrlPolicy,
    /// Total time allowed for one upload chunk (its body included).
    pub chunk_timeout: Duration,
    /// Bytes per upload chunk: a multiple of 256 KiB (rounded down, at least 256 KiB).
    pub chunk_bytes: usize,
    /// Times one chunk is resumed within an attempt after a 5xx or a lost connection, before
    /// the attempt gives up (the next attempt resumes the session again).
    pub chunk_retries: u32,
    /// Pause before the first in-attempt resume; doubled each time.
    pub chunk_retry_backoff: Duration,
    /// Pause between processing checks after the upload.
    pub processing_poll_interval: Duration,
    /// How long to wait for processing before the attempt ends (the next one checks again).
    pub processing_max_wait: Duration,
    /// The project's daily quota.
    pub quota: QuotaConfig,
}

impl YouTubeConfig {
    /// Configuration for Google's real endpoints.
    pub fn new(client_id: impl Into<String>, client_secret: Secret) -> Self {
        let parse = |s: &str| Url::parse(s).expect("static URL is valid");
        Self {
            api_base: parse("https://www.googleapis.com"),
            authorize_url: parse("https://accounts.google.com/o/oauth2/v2/auth"),
            token_url: parse("https://oauth2.googleapis.com/token"),
            revoke_url: parse("https://oauth2.googleapis.com/revoke"),
            client_id: client_id.into(),
            client_secret,
            scopes: DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            watch_url: "https://www.youtube.com/watch?v=".to_owned(),
            request_timeout: Duration::from_secs(30),
            media_policy: Default::default(),
            chunk_timeout: Duration::from_secs(300),
            chunk_bytes: 8 * 1024 * 1024,
            chunk_retries: 3,
            chunk_retry_backoff: Duration::from_secs(1),
            processing_poll_interval: Duration::from_secs(10),
            processing_max_wait: Duration::from_secs(15 * 60),
            quota: QuotaConfig::default(),
        }
    }

    /// Configuration for a YouTube-compatible server (the sandbox) serving everything under
    /// `base`: `{base}/o/oauth2/v2/auth`, `{base}/token`, `{base}/revoke`,
    /// `{base}/youtube/v3/...` and `{base}/upload/youtube/v3/...`.
    pub fn for_base(base: Url, client_id: impl Into<String>, client_secret: Secret) -> Self {
        Self {
            authorize_url: join(&base, "o/oauth2/v2/auth"),
            token_url: join(&base, "token"),
            revoke_url: join(&base, "revoke"),
            api_base: base,
            chunk_bytes: 1024 * 1024,
            chunk_retry_backoff: Duration::from_millis(100),
            processing_poll_interval: Duration::from_millis(100),
            processing_max_wait: Duration::from_secs(30),
            ..Self::new(client_id, client_secret)
        }
    }

    /// `{api_base}/youtube/v3/{path}`.
    pub(crate) fn api_url(&self, path: &str) -> Url {
        join(&self.api_base, &format!("youtube/v3/{path}"))
    }

    /// `{api_base}/upload/youtube/v3/{path}`.
    pub(crate) fn upload_url(&self, path: &str) -> Url {
        join(&self.api_base, &format!("upload/youtube/v3/{path}"))
    }

    /// The chunk size actually used: a positive multiple of 256 KiB.
    pub(crate) fn chunk_size(&self) -> usize {
        (self.chunk_bytes / CHUNK_GRANULARITY).max(1) * CHUNK_GRANULARITY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_and_production_urls() {
        let c = YouTubeConfig::for_base(
            Url::parse("http://127.0.0.1:4000/youtube").unwrap(),
            "id",
            Secret::new("s"),
        );
        assert_eq!(
            c.authorize_url.as_str(),
            "http://127.0.0.1:4000/youtube/o/oauth2/v2/auth"
        );
        assert_eq!(c.token_url.as_str(), "http://127.0.0.1:4000/youtube/token");
        assert_eq!(
            c.api_url("channels").as_str(),
            "http://127.0.0.1:4000/youtube/youtube/v3/channels"
        );
        assert_eq!(
            c.upload_url("videos").as_str(),
            "http://127.0.0.1:4000/youtube/upload/youtube/v3/videos"
        );
        let real = YouTubeConfig::new("id", Secret::new("s"));
        assert_eq!(
            real.upload_url("thumbnails/set").as_str(),
            "https://www.googleapis.com/upload/youtube/v3/thumbnails/set"
        );
    }

    #[test]
    fn chunks_are_multiples_of_256_kib() {
        let mut c = YouTubeConfig::new("id", Secret::new("s"));
        c.chunk_bytes = 1_000_000;
        assert_eq!(c.chunk_size(), 3 * CHUNK_GRANULARITY);
        c.chunk_bytes = 1;
        assert_eq!(c.chunk_size(), CHUNK_GRANULARITY);
    }
}
