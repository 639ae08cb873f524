//! What an operator sets for Reddit (`REDDIT_*`), and how the adapter is built from it.
use super::{RedditAdapter, RedditConfig};
use crate::platforms::settings::prelude::*;
use crate::secret::Secret;

pub const ENTRY: PlatformEntry =
    PlatformEntry::of::<RedditSettings>(herald_domain::Platform::Reddit);

/// Besides the shared `REDDIT_CLIENT_ID`, `REDDIT_CLIENT_SECRET` (a "web app"),
/// `REDDIT_API_BASE` (API and OAuth both under it) and `REDDIT_REQUEST_TIMEOUT_SECS`: the
/// User-Agent.
#[derive(Debug, Clone)]
pub struct RedditSettings {
    /// `REDDIT_USER_AGENT`: the unique User-Agent Reddit asks for,
    /// `<platform>:<app ID>:<version> (by /u/<username>)` (default: [`super::default_user_agent`]).
    pub user_agent: Option<String>,
}

impl PlatformSettings for RedditSettings {
    const PREFIX: &'static str = "REDDIT_";
    const TWIN: &'static str = "reddit";

    fn from_vars(vars: &Vars<'_>) -> Result<Self, SettingError> {
        Ok(Self {
            user_agent: vars.text("USER_AGENT"),
        })
    }

    fn adapter(self, app: App, with: &Services<'_>) -> anyhow::Result<Arc<dyn PlatformAdapter>> {
        // Installed apps have no secret: Basic auth then carries an empty password.
        let secret = app.client_secret.clone().unwrap_or_else(|| Secret::new(""));
        let timeout = app.request_timeout;
        let mut config = app.config(secret, RedditConfig::new, RedditConfig::for_base);
        config.request_timeout = timeout.unwrap_or(config.request_timeout);
        config.user_agent = self.user_agent.unwrap_or(config.user_agent);
        config.media_policy = with.media_policy.clone();
        Ok(Arc::new(RedditAdapter::new(config)?))
    }
}
