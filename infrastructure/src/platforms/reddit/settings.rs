//! What an operator sets for Reddit (`REDDIT_*`), and how the adapter is built from it.
use std::sync::Arc;

use super::{RedditAdapter, RedditConfig};
use crate::platforms::registry::PlatformEntry;
use crate::platforms::settings::{AppSettings, PlatformEnv, Services, SettingError};
use crate::platforms::PlatformAdapter;
use crate::secret::Secret;

pub const ENTRY: PlatformEntry = PlatformEntry {
    platform: herald_domain::Platform::Reddit,
    env_prefix: "REDDIT_",
    also_reads: &[],
    twin: "reddit",
    build,
};

/// `REDDIT_CLIENT_ID` and `REDDIT_CLIENT_SECRET` (a "web app"), `REDDIT_API_BASE` (API and
/// OAuth both under it), `REDDIT_REQUEST_TIMEOUT_SECS`, and the User-Agent below.
#[derive(Debug, Clone)]
pub struct RedditSettings {
    pub app: AppSettings,
    /// `REDDIT_USER_AGENT`: the unique User-Agent Reddit asks for,
    /// `<platform>:<app ID>:<version> (by /u/<username>)` (default: [`super::default_user_agent`]).
    pub user_agent: Option<String>,
}

impl RedditSettings {
    pub fn from_env(env: &PlatformEnv) -> Result<Self, SettingError> {
        let vars = env.scoped(ENTRY.env_prefix);
        Ok(Self {
            app: AppSettings::from_env(&vars)?,
            user_agent: vars.text("USER_AGENT"),
        })
    }
}

fn build(
    env: &PlatformEnv,
    services: &Services<'_>,
) -> anyhow::Result<Option<Arc<dyn PlatformAdapter>>> {
    let settings = RedditSettings::from_env(env)?;
    let Some(app) = settings.app.app(services.twin(ENTRY.twin))? else {
        return Ok(None);
    };
    // Installed apps have no secret: Basic auth then carries an empty password.
    let secret = app.client_secret.clone().unwrap_or_else(|| Secret::new(""));
    let mut config = app.config(secret, RedditConfig::new, RedditConfig::for_base);
    if let Some(agent) = settings.user_agent {
        config.user_agent = agent;
    }
    if let Some(timeout) = settings.app.request_timeout {
        config.request_timeout = timeout;
    }
    config.media_policy = services.media_policy.clone();
    Ok(Some(Arc::new(RedditAdapter::new(config)?)))
}
