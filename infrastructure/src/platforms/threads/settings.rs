//! What an operator sets for Threads (`THREADS_*`), and how the adapter is built from it.
use super::{ThreadsAdapter, ThreadsConfig};
use crate::platforms::settings::prelude::*;

pub const ENTRY: PlatformEntry =
    PlatformEntry::of::<ThreadsSettings>(herald_domain::Platform::Threads);

/// Besides the shared `THREADS_CLIENT_ID`, `THREADS_CLIENT_SECRET` (the app id and secret),
/// `THREADS_API_BASE` and `THREADS_REQUEST_TIMEOUT_SECS`: the quotas.
#[derive(Debug, Clone)]
pub struct ThreadsSettings {
    /// `THREADS_PUBLISH_QUOTA`: posts per profile per 24 hours when Threads gives no figure,
    /// and a cap on the one it gives.
    pub publish_quota: Option<u32>,
    /// `THREADS_REPLY_QUOTA`: the same for replies (the later parts of a thread).
    pub reply_quota: Option<u32>,
}

impl PlatformSettings for ThreadsSettings {
    const PREFIX: &'static str = "THREADS_";
    const TWIN: &'static str = "threads";

    fn from_vars(vars: &Vars<'_>) -> Result<Self, SettingError> {
        Ok(Self {
            publish_quota: vars.parse("PUBLISH_QUOTA")?,
            reply_quota: vars.parse("REPLY_QUOTA")?,
        })
    }

    /// Threads fetches media itself, from public URLs: no media policy to apply.
    fn adapter(self, app: App, _: &Services<'_>) -> anyhow::Result<Arc<dyn PlatformAdapter>> {
        // Threads has no public clients: every token call carries the app secret.
        let secret = app.required_secret()?;
        let timeout = app.request_timeout;
        let mut config = app.config(secret, ThreadsConfig::new, ThreadsConfig::for_base);
        config.request_timeout = timeout.unwrap_or(config.request_timeout);
        if let Some(quota) = self.publish_quota {
            config.publish_quota_cap = Some(quota);
            config.publish_quota_fallback = quota;
        }
        if let Some(quota) = self.reply_quota {
            config.reply_quota_cap = Some(quota);
            config.reply_quota_fallback = quota;
        }
        Ok(Arc::new(ThreadsAdapter::new(config)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platforms::settings::PlatformEnv;

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
