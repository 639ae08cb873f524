//! Where the TikTok adapter sends its requests, and the limits it keeps.
use std::time::Duration;

use url::Url;

use crate::media_source::MediaUrlPolicy;
use crate::secret::Secret;

/// Scopes Herald asks for: the profile (open id, display name, username), Direct Post and
/// inbox uploads (platform-facts §2.1). [`VIDEO_LIST_SCOPE`] is added only by configuration:
/// TikTok refuses an authorization that asks for a scope the app was not approved for.
pub const DEFAULT_SCOPES: [&str; 4] = [
    "user.info.basic",
    "user.info.profile",
    "video.publish",
    "video.upload",
];

/// The Display API scope "Read a user's public videos on TikTok"
/// (https://developers.tiktok.com/doc/display-api-overview/): with it, a pulled public post whose
/// init answer was lost is looked up instead of left to the user.
pub const VIDEO_LIST_SCOPE: &str = "video.list";

/// A binary megabyte, the unit of the chunk rules.
pub const MB: u64 = 1024 * 1024;

/// How a desktop app's PKCE challenge is encoded. TikTok's web flow takes no PKCE; third-party
/// notes say its desktop flow wants the hex SHA-256 of the verifier (UNCONFIRMED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PkceEncoding {
    /// RFC 7636: base64url of the SHA-256.
    Base64Url,
    /// Lowercase hex of the SHA-256 (the reported desktop quirk).
    Hex,
}

/// TikTok's documented per-token request limits (platform-facts §2.8) and the inbox rule
/// (§2.3). TikTok reports none of them in its responses, so Herald counts them itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TiktokLimits {
    /// `video/init`, `inbox/video/init` and `content/init`, each.
    pub init: u32,
    pub creator_info: u32,
    pub status: u32,
    /// `video/list` (600 a minute, https://developers.tiktok.com/doc/tiktok-api-v2-rate-limit).
    pub video_list: u32,
    /// The window of those limits (one minute).
    pub window: Duration,
    /// Added to the window: TikTok counts from when a request arrives, Herald from when it
    /// takes the slot, a little earlier.
    pub margin: Duration,
    /// Pending inbox shares allowed within `pending_share_window` (5 in 24 h).
    pub pending_shares: u32,
    pub pending_share_window: Duration,
}

impl Default for TiktokLimits {
    fn default() -> Self {
        Self {
            init: 6,
            creator_info: 20,
            status: 30,
            video_list: 600,
            window: Duration::from_secs(60),
            margin: Duration::from_secs(1),
            pending_shares: 5,
            pending_share_window: Duration::from_secs(24 * 3600),
        }
    }
}

/// Configuration of the TikTok adapter. Every URL is configurable so the same adapter talks to
/// TikTok or to the sandbox.
#[derive(Debug, Clone)]
pub struct TiktokConfig {
    /// `https://open.tiktokapis.com`; requests go to `{api_base}/v2/...`.
    pub api_base: Url,
    /// The browser-facing consent page (`https://www.tiktok.com/v2/auth/authorize/`).
    pub authorize_url: Url,
    /// Profile and post links: `{web_base}/@{username}/video/{id}`.
    pub web_base: Url,
    /// The app's `client_key`.
    pub client_key: String,
    pub client_secret: Secret,
    /// Scopes requested at authorization (default: `DEFAULT_SCOPES`), sent comma-separated.
    pub scopes: Vec<String>,
    /// PKCE for desktop apps; off for the web flow Herald uses.
    pub pkce: Option<PkceEncoding>,
    /// Total time allowed for one API request.
    pub request_timeout: Duration,
    /// Total time allowed for one chunk `PUT`.
    pub upload_timeout: Duration,
    /// Chunk size of FILE_UPLOAD (clamped to 5–64 MB).
    pub chunk_bytes: u64,
    /// Videos whose URL starts with one of these prefixes (verified for the app in TikTok's
    /// developer portal) are pulled by TikTok; every other video is uploaded in chunks.
    pub pull_from_url_prefixes: Vec<String>,
    /// Pause between status checks.
    pub status_poll_interval: Duration,
    /// How long one attempt waits for TikTok to process a post; the next attempt resumes.
    pub status_poll_max_wait: Duration,
    /// How long to wait after PUBLISH_COMPLETE for a public post's id (moderation).
    pub public_id_wait: Duration,
    /// Longest wait for a slot of a documented limit inside one attempt; longer waits end the
    /// attempt as rate-limited.
    pub max_limit_wait: Duration,
    pub limits: TiktokLimits,
    /// Which media URLs Herald may download (SSRF protection).
    pub media_policy: MediaUrlPolicy,
}

impl TiktokConfig {
    /// Configuration for the real TikTok API.
    pub fn new(client_key: impl Into<String>, client_secret: Secret) -> Self {
        let parse = |s: &str| Url::parse(s).expect("static URL is valid");
        Self {
            api_base: parse("https://open.tiktokapis.com"),
            authorize_url: parse("https://www.tiktok.com/v2/auth/authorize/"),
            web_base: parse("https://www.tiktok.com"),
            client_key: client_key.into(),
            client_secret,
            scopes: DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            pkce: None,
            request_timeout: Duration::from_secs(30),
            upload_timeout: Duration::from_secs(300),
            chunk_bytes: 10 * MB,
            pull_from_url_prefixes: Vec::new(),
            // 30 status calls a minute per token are shared by every post of the account.
            status_poll_interval: Duration::from_secs(5),
            status_poll_max_wait: Duration::from_secs(10 * 60),
            public_id_wait: Duration::from_secs(60),
            max_limit_wait: Duration::from_secs(120),
            limits: TiktokLimits::default(),
            media_policy: MediaUrlPolicy::default(),
        }
    }

    /// Configuration for a TikTok-compatible server (the sandbox) serving everything under
    /// `base`: `{base}/v2/auth/authorize/`, `{base}/v2/oauth/token/`, `{base}/v2/post/...`.
    pub fn for_base(base: Url, client_key: impl Into<String>, client_secret: Secret) -> Self {
        Self {
            authorize_url: join(&base, "v2/auth/authorize/"),
            api_base: base,
            status_poll_interval: Duration::from_millis(250),
            status_poll_max_wait: Duration::from_secs(60),
            public_id_wait: Duration::from_secs(5),
            ..Self::new(client_key, client_secret)
        }
    }

    pub(crate) fn api_url(&self, path: &str) -> Url {
        join(&self.api_base, path)
    }

    /// The account's profile page.
    pub(crate) fn profile_url(&self, username: Option<&str>) -> String {
        match username {
            Some(username) => join(&self.web_base, &format!("@{username}")).to_string(),
            None => self.web_base.to_string(),
        }
    }

    /// A post's page (photo posts live under `/photo/`).
    pub(crate) fn post_url(&self, username: Option<&str>, photo: bool, id: &str) -> String {
        let kind = if photo { "photo" } else { "video" };
        match username {
            Some(username) => join(&self.web_base, &format!("@{username}/{kind}/{id}")).to_string(),
            None => self.profile_url(None),
        }
    }

    /// Whether Herald asks for `video.list`, so it may look pulled public posts up.
    pub(crate) fn lists_videos(&self) -> bool {
        self.scopes.iter().any(|s| s == VIDEO_LIST_SCOPE)
    }

    /// Whether TikTok should pull `url` itself (a verified prefix) rather than receive chunks.
    pub(crate) fn pulls(&self, url: &str) -> bool {
        self.pull_from_url_prefixes
            .iter()
            .any(|p| !p.is_empty() && url.starts_with(p.as_str()))
    }
}

/// `base` with `path` appended, keeping the trailing `/` TikTok's paths end with
/// (`/v2/oauth/token/`).
pub(crate) fn join(base: &Url, path: &str) -> Url {
    let mut url = crate::platforms::x::join(base, path);
    if path.ends_with('/') {
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push("");
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_and_production_urls() {
        let c = TiktokConfig::for_base(
            Url::parse("http://127.0.0.1:4000/tiktok").unwrap(),
            "key",
            Secret::new("s"),
        );
        assert_eq!(
            c.authorize_url.as_str(),
            "http://127.0.0.1:4000/tiktok/v2/auth/authorize/"
        );
        assert_eq!(
            c.api_url("v2/post/publish/video/init/").as_str(),
            "http://127.0.0.1:4000/tiktok/v2/post/publish/video/init/"
        );
        let real = TiktokConfig::new("key", Secret::new("s"));
        assert_eq!(
            real.api_url("v2/oauth/token/").as_str(),
            "https://open.tiktokapis.com/v2/oauth/token/"
        );
        assert_eq!(
            real.post_url(Some("ann"), false, "7"),
            "https://www.tiktok.com/@ann/video/7"
        );
        assert_eq!(real.profile_url(None), "https://www.tiktok.com/");
        let mut pull = real;
        pull.pull_from_url_prefixes = vec!["https://cdn.example.com/v/".into()];
        assert!(pull.pulls("https://cdn.example.com/v/a.mp4"));
        assert!(!pull.pulls("https://cdn.example.com/a.mp4"));
    }
}
