//! Where the LinkedIn adapter sends its requests, and its limits.
use std::time::Duration;

use url::Url;

use crate::media_source::MediaUrlPolicy;
use crate::platforms::x::join;
use crate::secret::Secret;

/// Scopes Herald asks LinkedIn for (platform-facts §8.1): the member's identity (`openid
/// profile`), posting and reading as the member, and posting for the organisations the member
/// administers. Apps without the Community Management product drop the organisation scopes.
pub const DEFAULT_SCOPES: [&str; 7] = [
    "openid",
    "profile",
    "w_member_social",
    "r_member_social",
    "w_organization_social",
    "r_organization_social",
    "rw_organization_admin",
];

/// The `LinkedIn-Version` Herald sends unless configured. LinkedIn sunsets versions about a
/// year after release; a sunset version is refused with 426 and must be raised in the config.
pub const DEFAULT_VERSION: &str = "202610";

/// Organisation roles that may create posts for the organisation (platform-facts §8.1).
pub const DEFAULT_POSTING_ROLES: [&str; 3] = [
    "ADMINISTRATOR",
    "CONTENT_ADMINISTRATOR",
    "DIRECT_SPONSORED_CONTENT_POSTER",
];

/// Configuration of the LinkedIn adapter. Every URL is configurable so the same adapter talks
/// to LinkedIn or to the sandbox.
#[derive(Debug, Clone)]
pub struct LinkedInConfig {
    /// API base: `{api_base}/rest/...` (versioned) and `{api_base}/v2/userinfo`.
    pub api_base: Url,
    /// OAuth base: `{oauth_base}/authorization` (browser) and `{oauth_base}/accessToken`.
    pub oauth_base: Url,
    /// Token revocation on disconnect; `None` skips it.
    pub revoke_url: Option<Url>,
    /// The LinkedIn app's client id.
    pub client_id: String,
    /// The app's client secret, sent in the token request body.
    pub client_secret: Secret,
    /// Scopes requested at authorization (default: `DEFAULT_SCOPES`).
    pub scopes: Vec<String>,
    /// `LinkedIn-Version` header, `YYYYMM`.
    pub version: String,
    /// Roles that make an organisation a connection of its own.
    pub posting_roles: Vec<String>,
    /// Post links are `{post_url_base}/feed/update/{urn}/`.
    pub post_url_base: Url,
    /// Total time allowed for one API request (including its response body).
    pub request_timeout: Duration,
    /// Pause between image/video status checks.
    pub status_poll_interval: Duration,
    /// How long to wait for LinkedIn to process a video before giving up on this attempt.
    pub status_poll_max_wait: Duration,
    /// How long to stay away after a 429 that does not name a daily limit: LinkedIn sends no
    /// `Retry-After` and no rate-limit headers.
    pub throttle_backoff: Duration,
    /// Which media URLs may be downloaded (public addresses only by default).
    pub media_policy: MediaUrlPolicy,
}

impl LinkedInConfig {
    /// Configuration for the real LinkedIn API.
    pub fn new(client_id: impl Into<String>, client_secret: Secret) -> Self {
        let parse = |s: &str| Url::parse(s).expect("static URL is valid");
        Self {
            api_base: parse("https://api.linkedin.com"),
            oauth_base: parse("https://www.linkedin.com/oauth/v2"),
            revoke_url: Some(parse("https://www.linkedin.com/oauth/v2/revoke")),
            client_id: client_id.into(),
            client_secret,
            scopes: DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            version: DEFAULT_VERSION.to_owned(),
            posting_roles: DEFAULT_POSTING_ROLES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            post_url_base: parse("https://www.linkedin.com"),
            request_timeout: Duration::from_secs(30),
            status_poll_interval: Duration::from_secs(5),
            status_poll_max_wait: Duration::from_secs(10 * 60),
            throttle_backoff: Duration::from_secs(60),
            media_policy: MediaUrlPolicy::default(),
        }
    }

    /// Configuration for a LinkedIn-compatible server (the sandbox) serving everything under
    /// `base`: `{base}/oauth/v2/...`, `{base}/v2/userinfo`, `{base}/rest/...`.
    pub fn for_base(base: Url, client_id: impl Into<String>, client_secret: Secret) -> Self {
        Self {
            oauth_base: join(&base, "oauth/v2"),
            revoke_url: Some(join(&base, "oauth/v2/revoke")),
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

    /// `{api_base}/rest/{resource}/{urn}` with the URN percent-encoded, as Rest.li wants it.
    pub(crate) fn entity_url(&self, resource: &str, urn: &str) -> Url {
        let mut url = self.api_url(&format!("rest/{resource}"));
        let encoded: String = url::form_urlencoded::byte_serialize(urn.as_bytes()).collect();
        let path = format!("{}/{encoded}", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url
    }

    /// `{api_base}/rest/{resource}?action={action}` (Rest.li actions).
    pub(crate) fn action_url(&self, resource: &str, action: &str) -> Url {
        let mut url = self.api_url(&format!("rest/{resource}"));
        url.query_pairs_mut().append_pair("action", action);
        url
    }

    /// The public link of a post.
    pub(crate) fn post_url(&self, urn: &str) -> String {
        let mut url = join(&self.post_url_base, "feed/update");
        let path = format!("{}/{urn}/", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_and_production_urls() {
        let c = LinkedInConfig::for_base(
            Url::parse("http://127.0.0.1:4000/linkedin").unwrap(),
            "id",
            Secret::new("s"),
        );
        assert_eq!(
            c.oauth_url("accessToken").as_str(),
            "http://127.0.0.1:4000/linkedin/oauth/v2/accessToken"
        );
        assert_eq!(
            c.entity_url("videos", "urn:li:video:C5F").as_str(),
            "http://127.0.0.1:4000/linkedin/rest/videos/urn%3Ali%3Avideo%3AC5F"
        );
        let real = LinkedInConfig::new("id", Secret::new("s"));
        assert_eq!(
            real.post_url("urn:li:share:7"),
            "https://www.linkedin.com/feed/update/urn:li:share:7/"
        );
        assert_eq!(
            real.api_url("v2/userinfo").as_str(),
            "https://api.linkedin.com/v2/userinfo"
        );
    }
}
