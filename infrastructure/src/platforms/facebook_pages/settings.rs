//! What an operator sets for Facebook Pages (`FACEBOOK_PAGES_*`), and how the adapter is
//! built from it.
use std::sync::Arc;

use super::{FacebookPagesAdapter, FacebookPagesConfig};
use crate::platforms::registry::PlatformEntry;
use crate::platforms::settings::{AppSettings, PlatformEnv, Services, SettingError};
use crate::platforms::PlatformAdapter;

/// Named before the prefix was uniform; kept as operators set it.
const REELS_PER_DAY: &str = "FACEBOOK_REELS_PER_DAY";

pub const ENTRY: PlatformEntry = PlatformEntry {
    platform: herald_domain::Platform::FacebookPages,
    env_prefix: "FACEBOOK_PAGES_",
    also_reads: &[REELS_PER_DAY],
    twin: "meta",
    build,
};

/// `FACEBOOK_PAGES_CLIENT_ID` and `FACEBOOK_PAGES_CLIENT_SECRET` (the Meta app, Facebook
/// Login), `FACEBOOK_PAGES_API_BASE` (with a custom base, everything lives under
/// `{base}/v25.0`), `FACEBOOK_PAGES_REQUEST_TIMEOUT_SECS`, and the reels limit below.
#[derive(Debug, Clone)]
pub struct FacebookPagesSettings {
    pub app: AppSettings,
    /// `FACEBOOK_REELS_PER_DAY`: reels each Page publishes through the API per moving 24
    /// hours (Meta allows 30; [`FacebookPagesConfig`]'s default).
    pub reels_per_day: Option<u32>,
}

impl FacebookPagesSettings {
    pub fn from_env(env: &PlatformEnv) -> Result<Self, SettingError> {
        let vars = env.scoped(ENTRY.env_prefix);
        Ok(Self {
            app: AppSettings::from_env(&vars)?,
            reels_per_day: vars.full_parse(REELS_PER_DAY)?,
        })
    }
}

fn build(
    env: &PlatformEnv,
    services: &Services<'_>,
) -> anyhow::Result<Option<Arc<dyn PlatformAdapter>>> {
    let settings = FacebookPagesSettings::from_env(env)?;
    let Some(app) = settings.app.app(services.twin(ENTRY.twin))? else {
        return Ok(None);
    };
    // Facebook Login's server flow sends the app secret with every token call.
    let secret = app.required_secret()?;
    let mut config = app.config(
        secret,
        FacebookPagesConfig::new,
        FacebookPagesConfig::for_base,
    );
    if let Some(timeout) = settings.app.request_timeout {
        config.graph.request_timeout = timeout;
    }
    if let Some(reels) = settings.reels_per_day {
        config.reels_per_day = reels;
    }
    config.media_policy = services.media_policy.clone();
    Ok(Some(Arc::new(FacebookPagesAdapter::new(config)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reels_per_day_default_override_and_bad_value() {
        let mut env = PlatformEnv::default();
        assert_eq!(
            FacebookPagesSettings::from_env(&env).unwrap().reels_per_day,
            None
        );
        env.set("FACEBOOK_REELS_PER_DAY", "1");
        assert_eq!(
            FacebookPagesSettings::from_env(&env).unwrap().reels_per_day,
            Some(1)
        );
        env.set("FACEBOOK_REELS_PER_DAY", "thirty");
        let bad = FacebookPagesSettings::from_env(&env).unwrap_err();
        assert_eq!(bad.variable, "FACEBOOK_REELS_PER_DAY");
        assert!(crate::platforms::registry::reads("FACEBOOK_REELS_PER_DAY"));
    }
}
