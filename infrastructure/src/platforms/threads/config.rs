//! Where the Threads adapter sends its requests, and its limits.
use std::time::Duration;

use url::Url;

use crate::platforms::x::join;
use crate::secret::Secret;

/// Scopes Herald asks Threads for: reading the account and publishing (platform-facts §6.1),
/// and replying, which a thread's later parts are: "threads_manage_replies — Required for
/// making POST calls to reply endpoints", "threads_read_replies — Required for making GET calls
/// to reply endpoints" (https://developers.facebook.com/documentation/threads/retrieve-and-manage-replies).
pub const DEFAULT_SCOPES: [&str; 4] = [
    "threads_basic",
    "threads_content_publish",
    "threads_manage_replies",
    "threads_read_replies",
];

/// Configuration of the Threads adapter. Every URL is configurable so the same adapter talks
/// to Threads or to the sandbox.
#[derive(Debug, Clone)]
pub struct ThreadsConfig {
    /// Versioned API base; requests go to `{api_base}/me`, `{api_base}/{user-id}/threads`, ...
    pub api_base: Url,
    /// Unversioned base of the token endpoints: `{oauth_base}/oauth/access_token`,
    /// `{oauth_base}/access_token` (long-lived) and `{oauth_base}/refresh_access_token`.
    pub oauth_base: Url,
    /// The browser-facing consent page.
    pub authorize_url: Url,
    /// The Threads app id.
    pub client_id: String,
    /// The Threads app secret, sent in the request body (Threads has no Basic auth).
    pub client_secret: Secret,
    /// Scopes requested at authorization (default: `DEFAULT_SCOPES`).
    pub scopes: Vec<String>,
    /// Post links fall back to `{post_url_base}/post/{id}` when Threads gives no permalink.
    pub post_url_base: Url,
    /// Total time allowed for one API request (including its response body).
    pub request_timeout: Duration,
    /// Pause between container status checks.
    pub status_poll_interval: Duration,
    /// How long to wait for a container to be ready before giving up on this attempt.
    pub status_poll_max_wait: Duration,
    /// Posts per 24 hours when `threads_publishing_limit` does not say (facts §6.3: 250).
    pub publish_quota_fallback: u32,
    /// Publish at most this many per 24 hours even when Threads allows more.
    pub publish_quota_cap: Option<u32>,
    /// Replies per 24 hours when `threads_publishing_limit` does not say: "Threads profiles are
    /// limited to 1,000 API-published replies within a 24-hour moving period"
    /// (https://developers.facebook.com/documentation/threads/retrieve-and-manage-replies).
    pub reply_quota_fallback: u32,
    /// Publish at most this many replies per 24 hours even when Threads allows more.
    pub reply_quota_cap: Option<u32>,
}

impl ThreadsConfig {
    /// Configuration for the real Threads API.
    pub fn new(client_id: impl Into<String>, client_secret: Secret) -> Self {
        let parse = |s: &str| Url::parse(s).expect("static URL is valid");
        Self {
            api_base: parse("https://graph.threads.net/v1.0"),
            oauth_base: parse("https://graph.threads.net"),
            authorize_url: parse("https://threads.net/oauth/authorize"),
            client_id: client_id.into(),
            client_secret,
            scopes: DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            post_url_base: parse("https://www.threads.net"),
            request_timeout: Duration::from_secs(30),
            // Meta recommends about 30 s before publishing; videos take longer.
            status_poll_interval: Duration::from_secs(3),
            status_poll_max_wait: Duration::from_secs(5 * 60),
            publish_quota_fallback: 250,
            publish_quota_cap: None,
            reply_quota_fallback: 1000,
            reply_quota_cap: None,
        }
    }

    /// Configuration for a Threads-compatible server (the sandbox) serving everything under
    /// `base`: `{base}/oauth/authorize`, `{base}/oauth/access_token`, `{base}/me`, ...
    pub fn for_base(base: Url, client_id: impl Into<String>, client_secret: Secret) -> Self {
        Self {
            authorize_url: join(&base, "oauth/authorize"),
            oauth_base: base.clone(),
            post_url_base: base.clone(),
            api_base: base,
            status_poll_interval: Duration::from_millis(100),
            status_poll_max_wait: Duration::from_secs(30),
            ..Self::new(client_id, client_secret)
        }
    }

    pub(crate) fn api_url(&self, path: &str) -> Url {
        join(&self.api_base, path)
    }

    pub(crate) fn oauth_url(&self, path: &str) -> Url {
        join(&self.oauth_base, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_and_production_urls() {
        let c = ThreadsConfig::for_base(
            Url::parse("http://127.0.0.1:4000/threads").unwrap(),
            "id",
            Secret::new("s"),
        );
        assert_eq!(
            c.authorize_url.as_str(),
            "http://127.0.0.1:4000/threads/oauth/authorize"
        );
        assert_eq!(
            c.api_url("me/threads_publish").as_str(),
            "http://127.0.0.1:4000/threads/me/threads_publish"
        );
        let real = ThreadsConfig::new("id", Secret::new("s"));
        assert_eq!(
            real.api_url("me").as_str(),
            "https://graph.threads.net/v1.0/me"
        );
        assert_eq!(
            real.oauth_url("refresh_access_token").as_str(),
            "https://graph.threads.net/refresh_access_token"
        );
    }
}
