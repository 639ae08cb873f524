//! What an operator sets for LinkedIn (`LINKEDIN_*`), and how the adapter is built from it.
use std::sync::Arc;

use super::{LinkedInAdapter, LinkedInConfig};
use crate::platforms::registry::PlatformEntry;
use crate::platforms::settings::{list, AppSettings, PlatformEnv, Services, SettingError};
use crate::platforms::PlatformAdapter;

pub const ENTRY: PlatformEntry = PlatformEntry {
    platform: herald_domain::Platform::Linkedin,
    env_prefix: "LINKEDIN_",
    also_reads: &[],
    twin: "linkedin",
    build,
};

/// `LINKEDIN_CLIENT_ID` and `LINKEDIN_CLIENT_SECRET`, `LINKEDIN_API_BASE`,
/// `LINKEDIN_REQUEST_TIMEOUT_SECS`, and the settings below; unset, each keeps
/// [`LinkedInConfig`]'s default.
#[derive(Debug, Clone)]
pub struct LinkedInSettings {
    pub app: AppSettings,
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

impl LinkedInSettings {
    pub fn from_env(env: &PlatformEnv) -> Result<Self, SettingError> {
        let vars = env.scoped(ENTRY.env_prefix);
        Ok(Self {
            app: AppSettings::from_env(&vars)?,
            version: vars.text("VERSION").map(|v| v.trim().to_owned()),
            scopes: vars.text("SCOPES").map(|s| list(&s, &[' ', '\t', '\n'])),
            throttle_backoff_secs: vars.parse("THROTTLE_BACKOFF_SECS")?,
        })
    }
}

fn build(
    env: &PlatformEnv,
    services: &Services<'_>,
) -> anyhow::Result<Option<Arc<dyn PlatformAdapter>>> {
    let settings = LinkedInSettings::from_env(env)?;
    let Some(app) = settings.app.app(services.twin(ENTRY.twin))? else {
        return Ok(None);
    };
    // LinkedIn's token endpoint always wants the client secret in the body.
    let secret = app.required_secret()?;
    let mut config = app.config(secret, LinkedInConfig::new, LinkedInConfig::for_base);
    if let Some(timeout) = settings.app.request_timeout {
        config.request_timeout = timeout;
    }
    if let Some(version) = settings.version {
        config.version = version;
    }
    if let Some(scopes) = settings.scopes {
        config.scopes = scopes;
    }
    if let Some(secs) = settings.throttle_backoff_secs {
        config.throttle_backoff = std::time::Duration::from_secs(secs);
    }
    config.media_policy = services.media_policy.clone();
    Ok(Some(Arc::new(LinkedInAdapter::new(config)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

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
