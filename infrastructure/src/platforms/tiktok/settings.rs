//! What an operator sets for TikTok (`TIKTOK_*`), and how the adapter is built from it.
use std::sync::Arc;

use super::{TiktokAdapter, TiktokConfig};
use crate::platforms::registry::PlatformEntry;
use crate::platforms::settings::{list, AppSettings, PlatformEnv, Services, SettingError};
use crate::platforms::PlatformAdapter;

pub const ENTRY: PlatformEntry = PlatformEntry {
    platform: herald_domain::Platform::Tiktok,
    env_prefix: "TIKTOK_",
    also_reads: &[],
    twin: "tiktok",
    build,
};

/// `TIKTOK_CLIENT_ID` (the app's client key) and `TIKTOK_CLIENT_SECRET`, `TIKTOK_API_BASE`
/// (the consent page lives under it too), `TIKTOK_REQUEST_TIMEOUT_SECS`, and the settings
/// below; unset, each keeps [`TiktokConfig`]'s default.
#[derive(Debug, Clone)]
pub struct TiktokSettings {
    pub app: AppSettings,
    /// `TIKTOK_CHUNK_BYTES`: chunk size of video uploads (5-64 MiB).
    pub chunk_bytes: Option<u64>,
    /// `TIKTOK_PULL_FROM_URL_PREFIXES`: comma-separated URL prefixes verified for the app;
    /// videos under them are pulled by TikTok instead of uploaded in chunks.
    pub pull_from_url_prefixes: Vec<String>,
    /// `TIKTOK_SCOPES`: comma-separated scopes to request (add `video.list` where the app is
    /// approved for it: a pulled public post whose init answer was lost is then looked up).
    pub scopes: Option<Vec<String>>,
}

impl TiktokSettings {
    pub fn from_env(env: &PlatformEnv) -> Result<Self, SettingError> {
        let vars = env.scoped(ENTRY.env_prefix);
        Ok(Self {
            app: AppSettings::from_env(&vars)?,
            chunk_bytes: vars.parse("CHUNK_BYTES")?,
            pull_from_url_prefixes: vars
                .text("PULL_FROM_URL_PREFIXES")
                .map(|p| list(&p, &[',']))
                .unwrap_or_default(),
            // TikTok separates scopes with commas; spaces are forgiven.
            scopes: vars
                .text("SCOPES")
                .map(|s| list(&s, &[',', ' ', '\t', '\n'])),
        })
    }
}

fn build(
    env: &PlatformEnv,
    services: &Services<'_>,
) -> anyhow::Result<Option<Arc<dyn PlatformAdapter>>> {
    let settings = TiktokSettings::from_env(env)?;
    let Some(app) = settings.app.app(services.twin(ENTRY.twin))? else {
        return Ok(None);
    };
    // Every TikTok token call carries the client secret.
    let secret = app.required_secret()?;
    let mut config = app.config(secret, TiktokConfig::new, TiktokConfig::for_base);
    if let Some(timeout) = settings.app.request_timeout {
        config.request_timeout = timeout;
    }
    if let Some(bytes) = settings.chunk_bytes {
        config.chunk_bytes = bytes;
    }
    config.pull_from_url_prefixes = settings.pull_from_url_prefixes;
    if let Some(scopes) = settings.scopes {
        config.scopes = scopes;
    }
    config.media_policy = services.media_policy.clone();
    Ok(Some(Arc::new(TiktokAdapter::new(config)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_default_override_and_bad_value() {
        let mut env = PlatformEnv::default();
        let unset = TiktokSettings::from_env(&env).unwrap();
        assert!(unset.scopes.is_none() && unset.pull_from_url_prefixes.is_empty());
        env.set("TIKTOK_SCOPES", "user.info.basic, video.publish")
            .set("TIKTOK_PULL_FROM_URL_PREFIXES", "https://a/, ,https://b/");
        let set = TiktokSettings::from_env(&env).unwrap();
        assert_eq!(set.scopes.unwrap(), ["user.info.basic", "video.publish"]);
        assert_eq!(set.pull_from_url_prefixes, ["https://a/", "https://b/"]);
        env.set("TIKTOK_CHUNK_BYTES", "10 MiB");
        let bad = TiktokSettings::from_env(&env).unwrap_err();
        assert_eq!(bad.variable, "TIKTOK_CHUNK_BYTES");
        assert!(bad.to_string().contains("\"10 MiB\""), "{bad}");
    }
}
