//! Where the X adapter sends its requests, and its limits.
use std::time::Duration;

use url::Url;

use crate::media_source::MediaUrlPolicy;

use crate::secret::Secret;

/// Scopes Herald asks X for: publishing, reading the account, media upload, refresh tokens.
pub const DEFAULT_SCOPES: [&str; 5] = [
    "tweet.read",
    "tweet.write",
    "users.read",
    "media.write",
    "offline.access",
];

/// Configuration of the X adapter. Every URL is configurable so the same adapter talks to X
/// or to the sandbox.
#[derive(Debug, Clone)]
pub struct XConfig {
    /// API base; requests go to `{api_base}/2/...`.
    pub api_base: Url,
    /// The browser-facing consent page.
    pub authorize_url: Url,
    /// Code and refresh-token exchanges.
    pub token_url: Url,
    /// Token revocation (disconnect).
    pub revoke_url: Url,
    /// The X app's OAuth 2.0 client id.
    pub client_id: String,
    /// Set for a confidential client (Basic auth at the token endpoint).
    pub client_secret: Option<Secret>,
    /// Scopes requested at authorization (default: `DEFAULT_SCOPES`).
    pub scopes: Vec<String>,
    /// Post links are `{post_url_base}/i/web/status/{id}`.
    pub post_url_base: Url,
    /// Bytes per media APPEND segment; X allows at most 1000 segments per upload.
    pub media_chunk_bytes: usize,
    /// Total time allowed for one API request (including its response body).
    pub request_timeout: Duration,
    /// How long to wait for X to finish processing a video or GIF before giving up.
    pub status_poll_max_wait: Duration,
    /// Which media URLs may be downloaded (SSRF protection).
    pub media_policy: MediaUrlPolicy,
}

impl XConfig {
    /// Configuration for the real X API.
    pub fn new(client_id: impl Into<String>, client_secret: Option<Secret>) -> Self {
        let parse = |s: &str| Url::parse(s).expect("static URL is valid");
        Self {
            api_base: parse("https://api.x.com"),
            authorize_url: parse("https://x.com/i/oauth2/authorize"),
            token_url: parse("https://api.x.com/2/oauth2/token"),
            revoke_url: parse("https://api.x.com/2/oauth2/revoke"),
            client_id: client_id.into(),
            client_secret,
            scopes: DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            post_url_base: parse("https://x.com"),
            media_chunk_bytes: 4 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            status_poll_max_wait: Duration::from_secs(10 * 60),
            media_policy: MediaUrlPolicy::default(),
        }
    }

    /// Configuration for an X-compatible server (the sandbox) at `api_base`, which serves
    /// everything under that one base: `{base}/i/oauth2/authorize`, `{base}/2/oauth2/token`,
    /// `{base}/2/oauth2/revoke` and `{base}/2/...`. Post links also point at `{base}`.
    pub fn for_base(
        api_base: Url,
        client_id: impl Into<String>,
        client_secret: Option<Secret>,
    ) -> Self {
        Self {
            authorize_url: join(&api_base, "i/oauth2/authorize"),
            token_url: join(&api_base, "2/oauth2/token"),
            revoke_url: join(&api_base, "2/oauth2/revoke"),
            post_url_base: api_base.clone(),
            api_base,
            ..Self::new(client_id, client_secret)
        }
    }

    /// `{api_base}/{path}`, keeping any path the base already has (e.g. the sandbox's `/x`).
    pub(crate) fn api_url(&self, path: &str) -> Url {
        join(&self.api_base, path)
    }
}

/// `base` with the `/`-separated `path` appended to its path. `Url::join` would replace the
/// base's last segment instead. A base that cannot have a path is returned unchanged, and
/// requests to it fail with a clear error.
pub(crate) fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments
            .pop_if_empty()
            .extend(path.split('/').filter(|s| !s.is_empty()));
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_urls_keep_the_base_path() {
        let base = Url::parse("http://127.0.0.1:4000/x").unwrap();
        let c = XConfig::for_base(base, "herald-sandbox-x", None);
        assert_eq!(
            c.authorize_url.as_str(),
            "http://127.0.0.1:4000/x/i/oauth2/authorize"
        );
        assert_eq!(
            c.token_url.as_str(),
            "http://127.0.0.1:4000/x/2/oauth2/token"
        );
        assert_eq!(
            c.revoke_url.as_str(),
            "http://127.0.0.1:4000/x/2/oauth2/revoke"
        );
        assert_eq!(
            c.api_url("2/media/upload/123/append").as_str(),
            "http://127.0.0.1:4000/x/2/media/upload/123/append"
        );
        assert_eq!(c.media_chunk_bytes, 4 * 1024 * 1024);
    }

    #[test]
    fn production_defaults() {
        let c = XConfig::new("id", None);
        assert_eq!(c.api_url("2/tweets").as_str(), "https://api.x.com/2/tweets");
        assert_eq!(c.authorize_url.as_str(), "https://x.com/i/oauth2/authorize");
        assert!(c.scopes.iter().any(|s| s == "offline.access"));
        let slash = Url::parse("http://h/base/").unwrap();
        assert_eq!(
            join(&slash, "2/users/me").as_str(),
            "http://h/base/2/users/me"
        );
    }
}
