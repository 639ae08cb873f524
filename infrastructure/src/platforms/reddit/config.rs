//! Where the Reddit adapter sends its requests, and how it introduces itself.
use std::time::Duration;

use url::Url;

use crate::media_source::MediaUrlPolicy;
use crate::platforms::x::join;
use crate::secret::Secret;

/// Scopes Herald asks Reddit for: the account (`identity`), submitting (`submit`), reading
/// posts back (`read`, `history`) and the subreddits' flairs (`flair`).
pub const DEFAULT_SCOPES: [&str; 5] = ["identity", "submit", "read", "history", "flair"];

/// Configuration of the Reddit adapter. Every URL is configurable so the same adapter talks to
/// Reddit or to the sandbox.
#[derive(Debug, Clone)]
pub struct RedditConfig {
    /// Authenticated API base: `{api_base}/api/submit`, `{api_base}/api/v1/me`, ...
    pub api_base: Url,
    /// OAuth base: `{oauth_base}/api/v1/authorize`, `/api/v1/access_token`, `/api/v1/revoke_token`.
    pub oauth_base: Url,
    /// The Reddit app's client id.
    pub client_id: String,
    /// Its secret (HTTP Basic at the token endpoint; empty for installed apps).
    pub client_secret: Secret,
    /// Scopes requested at authorization (default: `DEFAULT_SCOPES`).
    pub scopes: Vec<String>,
    /// Reddit asks every app for a unique `<platform>:<app ID>:<version> (by /u/<username>)`.
    pub user_agent: String,
    /// Post links built from a permalink are `{post_url_base}{permalink}`.
    pub post_url_base: Url,
    /// Total time allowed for one API request (including its response body).
    pub request_timeout: Duration,
    /// An image or video post shows up in the user's listing once Reddit has processed it:
    /// how often and how long to look for it after submitting (a video: `video_poll_max_wait`,
    /// as Reddit transcodes it first).
    pub image_poll_interval: Duration,
    pub image_poll_max_wait: Duration,
    pub video_poll_max_wait: Duration,
    /// Largest image Reddit takes (bytes).
    pub image_max_bytes: u64,
    /// Largest video Herald sends (bytes); the content rules refuse larger ones at acceptance
    /// when the video's size is known then.
    pub video_max_bytes: u64,
    /// Total time allowed for one video upload to the media storage.
    pub video_upload_timeout: Duration,
    /// Which media URLs may be downloaded (public addresses only by default).
    pub media_policy: MediaUrlPolicy,
}

impl RedditConfig {
    /// Configuration for the real Reddit API.
    pub fn new(client_id: impl Into<String>, client_secret: Secret) -> Self {
        let parse = |s: &str| Url::parse(s).expect("static URL is valid");
        let client_id = client_id.into();
        Self {
            api_base: parse("https://oauth.reddit.com"),
            oauth_base: parse("https://www.reddit.com"),
            user_agent: default_user_agent(&client_id),
            client_id,
            client_secret,
            scopes: DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            post_url_base: parse("https://www.reddit.com"),
            request_timeout: Duration::from_secs(30),
            image_poll_interval: Duration::from_secs(2),
            image_poll_max_wait: Duration::from_secs(60),
            video_poll_max_wait: Duration::from_secs(180),
            image_max_bytes: 20 * 1024 * 1024,
            video_max_bytes: 1024 * 1024 * 1024,
            video_upload_timeout: Duration::from_secs(3600),
            media_policy: MediaUrlPolicy::default(),
        }
    }

    /// Configuration for a Reddit-compatible server (the sandbox) serving everything under
    /// `base`.
    pub fn for_base(base: Url, client_id: impl Into<String>, client_secret: Secret) -> Self {
        Self {
            oauth_base: base.clone(),
            post_url_base: base.clone(),
            api_base: base,
            image_poll_interval: Duration::from_millis(100),
            image_poll_max_wait: Duration::from_secs(10),
            video_poll_max_wait: Duration::from_secs(10),
            ..Self::new(client_id, client_secret)
        }
    }

    pub(crate) fn api_url(&self, path: &str) -> Url {
        join(&self.api_base, path)
    }

    pub(crate) fn oauth_url(&self, path: &str) -> Url {
        join(&self.oauth_base, path)
    }

    /// `{post_url_base}{permalink}` for a permalink like `/r/rust/comments/abc/title/`.
    pub(crate) fn permalink_url(&self, permalink: &str) -> String {
        let mut url = self.post_url_base.clone();
        let path = format!(
            "{}/{}",
            url.path().trim_end_matches('/'),
            permalink.trim_start_matches('/')
        );
        url.set_path(&path);
        url.to_string()
    }
}

/// `server:{client id}:v{version} (by /u/herald)`: set `REDDIT_USER_AGENT` to name the Reddit
/// account that runs the app instead.
pub fn default_user_agent(client_id: &str) -> String {
    format!(
        "server:{client_id}:v{} (by /u/herald)",
        env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_and_production_urls() {
        let c = RedditConfig::for_base(
            Url::parse("http://127.0.0.1:4000/reddit").unwrap(),
            "id",
            Secret::new("s"),
        );
        assert_eq!(
            c.oauth_url("api/v1/access_token").as_str(),
            "http://127.0.0.1:4000/reddit/api/v1/access_token"
        );
        assert_eq!(
            c.permalink_url("/r/rust/comments/abc/t/"),
            "http://127.0.0.1:4000/reddit/r/rust/comments/abc/t/"
        );
        let real = RedditConfig::new("abc", Secret::new("s"));
        assert_eq!(
            real.api_url("api/submit").as_str(),
            "https://oauth.reddit.com/api/submit"
        );
        assert!(real.user_agent.starts_with("server:abc:v"));
        assert!(real.user_agent.ends_with("(by /u/herald)"));
    }
}
