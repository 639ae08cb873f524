//! What an operator sets for LinkedIn (`LINKEDIN_*`), and how the adapter is built from it.
use super::{LinkedInAdapter, LinkedInConfig};
use crate::platforms::settings::list;
use crate::platforms::settings::prelude::*;

pub const ENTRY: PlatformEntry =
    PlatformEntry::of::<LinkedInSettings>(herald_domain::Platform::Linkedin);

/// Besides the shared `LINKEDIN_CLIENT_ID`, `LINKEDIN_CLIENT_SECRET`, `LINKEDIN_API_BASE` and
/// `LINKEDIN_REQUEST_TIMEOUT_SECS`: the settings below. Unset, each keeps
/// [`LinkedInConfig`]'s default.
#[derive(Debug, Clone)]
pub struct LinkedInSettings {
    /// `LINKEDIN_VERSION`: the `LinkedIn-Version` (YYYYMM) sent with every versioned call;
    /// raise it when LinkedIn sunsets the one in use (426 NONEXISTENT_VERSION).
    pub version: Option<String>,
    /// `LINKEDIN_SCOPES`: space-separated scopes to request (drop the organisation scopes
    /// without the Community Management product).
    pub scopes: Option<Vec<String>>,
    /// `LINKEDIN_THROTTLE_BACKOFF_SECS`: how long to wait after a 429 that names no daily
    /// limit (LinkedIn sends no Retry-After).
    pub throttle_backoff_secs: Option<u64>,
}

impl PlatformSettings for LinkedInSettings {
    const PREFIX: &'static str = "LINKEDIN_";
    const TWIN: &'static str = "linkedin";

    fn from_vars(vars: &Vars<'_>) -> Result<Self, SettingError> {
        Ok(Self {
            version: vars.text("VERSION").map(|v| v.trim().to_owned()),
            scopes: vars.text("SCOPES").map(|s| list(&s, &[' ', '\t', '\n'])),
            throttle_backoff_secs: vars.parse("THROTTLE_BACKOFF_SECS")?,
        })
    }

    fn adapter(self, app: App, with: &Services<'_>) -> anyhow::Result<Arc<dyn PlatformAdapter>> {
        // LinkedIn's token endpoint always wants the client secret in the body.
        let secret = app.required_secret()?;
        let timeout = app.request_timeout;
        let mut config = app.config(secret, LinkedInConfig::new, LinkedInConfig::for_base);
        config.request_timeout = timeout.unwrap_or(config.request_timeout);
        config.version = self.version.unwrap_or(config.version);
        config.scopes = self.scopes.unwrap_or(config.scopes);
        if let Some(secs) = self.throttle_backoff_secs {
            config.throttle_backoff = std::time::Duration::from_secs(secs);
        }
        config.media_policy = with.media_policy.clone();
        Ok(Arc::new(LinkedInAdapter::new(config)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platforms::settings::PlatformEnv;

    #[test]
    fn scopes_and_backoff_default_override_and_bad_value() {
        let mut env = PlatformEnv::default();
        let unset = LinkedInSettings::from_env(&env).unwrap();
        assert!(unset.scopes.is_none() && unset.throttle_backoff_secs.is_none());
        env.set("LINKEDIN_SCOPES", "openid  profile w_member_social");
        assert_eq!(
            LinkedInSettings::from_env(&env).unwrap().scopes.unwrap(),
            ["openid", "profile", "w_member_social"]
        );
        env.set("LINKEDIN_THROTTLE_BACKOFF_SECS", "1m");
        let bad = LinkedInSettings::from_env(&env).unwrap_err();
        assert_eq!(bad.variable, "LINKEDIN_THROTTLE_BACKOFF_SECS");
    }
}
