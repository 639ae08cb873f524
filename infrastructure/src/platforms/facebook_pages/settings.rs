//! What an operator sets for Facebook Pages (`FACEBOOK_PAGES_*`), and how the adapter is
//! built from it.
use super::{FacebookPagesAdapter, FacebookPagesConfig};
use crate::platforms::settings::prelude::*;

/// Named before the prefix was uniform; kept as operators set it.
const REELS_PER_DAY: &str = "FACEBOOK_REELS_PER_DAY";

pub const ENTRY: PlatformEntry =
    PlatformEntry::of::<FacebookPagesSettings>(herald_domain::Platform::FacebookPages);

/// Besides the shared `FACEBOOK_PAGES_CLIENT_ID`, `FACEBOOK_PAGES_CLIENT_SECRET` (the Meta app,
/// Facebook Login), `FACEBOOK_PAGES_API_BASE` (with a custom base, everything lives under
/// `{base}/v25.0`) and `FACEBOOK_PAGES_REQUEST_TIMEOUT_SECS`: the reels limit.
#[derive(Debug, Clone)]
pub struct FacebookPagesSettings {
    /// `FACEBOOK_REELS_PER_DAY`: reels each Page publishes through the API per moving 24
    /// hours (Meta allows 30; [`FacebookPagesConfig`]'s default).
    pub reels_per_day: Option<u32>,
}

impl PlatformSettings for FacebookPagesSettings {
    const PREFIX: &'static str = "FACEBOOK_PAGES_";
    const ALSO_READS: &'static [&'static str] = &[REELS_PER_DAY];
    const TWIN: &'static str = "meta";

    fn from_vars(vars: &Vars<'_>) -> Result<Self, SettingError> {
        Ok(Self {
            reels_per_day: vars.full_parse(REELS_PER_DAY)?,
        })
    }

    fn adapter(self, app: App, with: &Services<'_>) -> anyhow::Result<Arc<dyn PlatformAdapter>> {
        // Facebook Login's server flow sends the app secret with every token call.
        let secret = app.required_secret()?;
        let timeout = app.request_timeout;
        let mut config = app.config(
            secret,
            FacebookPagesConfig::new,
            FacebookPagesConfig::for_base,
        );
        config.graph.request_timeout = timeout.unwrap_or(config.graph.request_timeout);
        config.reels_per_day = self.reels_per_day.unwrap_or(config.reels_per_day);
        config.media_policy = with.media_policy.clone();
        Ok(Arc::new(FacebookPagesAdapter::new(config)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platforms::settings::PlatformEnv;

    #[test]
    fn reels_per_day_default_override_and_bad_value() {
        let mut env = PlatformEnv::default();
        let reels =
            |env: &PlatformEnv| FacebookPagesSettings::from_env(env).map(|s| s.reels_per_day);
        assert_eq!(reels(&env), Ok(None));
        env.set("FACEBOOK_REELS_PER_DAY", "1");
        assert_eq!(reels(&env), Ok(Some(1)));
        env.set("FACEBOOK_REELS_PER_DAY", "thirty");
        assert_eq!(reels(&env).unwrap_err().variable, "FACEBOOK_REELS_PER_DAY");
        assert!(crate::platforms::registry::reads("FACEBOOK_REELS_PER_DAY"));
    }
}
