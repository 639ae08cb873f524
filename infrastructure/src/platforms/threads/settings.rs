//! What an operator sets for Threads (`THREADS_*`), and how the adapter is built from it.
use std::sync::Arc;

use super::{ThreadsAdapter, ThreadsConfig};
use crate::platforms::registry::PlatformEntry;
use crate::platforms::settings::{AppSettings, PlatformEnv, Services, SettingError};
use crate::platforms::PlatformAdapter;

pub const ENTRY: PlatformEntry = PlatformEntry {
    platform: herald_domain::Platform::Threads,
    env_prefix: "THREADS_",
    also_reads: &[],
    twin: "threads",
    build,
};

/// `THREADS_CLIENT_ID` and `THREADS_CLIENT_SECRET` (the app id and secret), `THREADS_API_BASE`,
/// `THREADS_REQUEST_TIMEOUT_SECS`, and the quotas below.
#[derive(Debug, Clone)]
pub struct ThreadsSettings {
    pub app: AppSettings,
    /// `THREADS_PUBLISH_QUOTA`: posts per profile per 24 hours when Threads gives no figure,
    /// and a cap on the one it gives.
    pub publish_quota: Option<u32>,
    /// `THREADS_REPLY_QUOTA`: the same for replies (the later parts of a thread).
    pub reply_quota: Option<u32>,
}

impl ThreadsSettings {
    pub fn from_env(env: &PlatformEnv) -> Result<Self, SettingError> {
        let vars = env.scoped(ENTRY.env_prefix);
        Ok(Self {
            app: AppSettings::from_env(&vars)?,
            publish_quota: vars.parse("PUBLISH_QUOTA")?,
            reply_quota: vars.parse("REPLY_QUOTA")?,
        })
    }
}

fn build(
    env: &PlatformEnv,
    services: &Services<'_>,
) -> anyhow::Result<Option<Arc<dyn PlatformAdapter>>> {
    let settings = ThreadsSettings::from_env(env)?;
    let Some(app) = settings.app.app(services.twin(ENTRY.twin))? else {
        return Ok(None);
    };
    // Threads has no public clients: every token call carries the app secret.
    let secret = app.required_secret()?;
    let mut config = app.config(secret, ThreadsConfig::new, ThreadsConfig::for_base);
    if let Some(timeout) = settings.app.request_timeout {
        config.request_timeout = timeout;
    }
    if let Some(quota) = settings.publish_quota {
        config.publish_quota_cap = Some(quota);
        config.publish_quota_fallback = quota;
    }
    if let Some(quota) = settings.reply_quota {
        config.reply_quota_cap = Some(quota);
        config.reply_quota_fallback = quota;
    }
    Ok(Some(Arc::new(ThreadsAdapter::new(config)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_default_override_and_bad_value() {
        let mut env = PlatformEnv::default();
        let unset = ThreadsSettings::from_env(&env).unwrap();
        assert_eq!((unset.publish_quota, unset.reply_quota), (None, None));
        env.set("THREADS_REPLY_QUOTA", "10");
        assert_eq!(
            ThreadsSettings::from_env(&env).unwrap().reply_quota,
            Some(10)
        );
        env.set("THREADS_PUBLISH_QUOTA", "-1");
        let bad = ThreadsSettings::from_env(&env).unwrap_err();
        assert_eq!(bad.variable, "THREADS_PUBLISH_QUOTA");
    }
}
