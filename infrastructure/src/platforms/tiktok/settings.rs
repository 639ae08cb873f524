//! What an operator sets for TikTok (`TIKTOK_*`), and how the adapter is built from it.
use super::{TiktokAdapter, TiktokConfig};
use crate::platforms::settings::list;
use crate::platforms::settings::prelude::*;

pub const ENTRY: PlatformEntry =
    PlatformEntry::of::<TiktokSettings>(herald_domain::Platform::Tiktok);

/// Besides the shared `TIKTOK_CLIENT_ID` (the app's client key), `TIKTOK_CLIENT_SECRET`,
/// `TIKTOK_API_BASE` (the consent page lives under it too) and `TIKTOK_REQUEST_TIMEOUT_SECS`:
/// the settings below. Unset, each keeps [`TiktokConfig`]'s default.
#[derive(Debug, Clone)]
pub struct TiktokSettings {
    /// `TIKTOK_CHUNK_BYTES`: chunk size of video uploads (5-64 MiB).
    pub chunk_bytes: Option<u64>,
    /// `TIKTOK_PULL_FROM_URL_PREFIXES`: comma-separated URL prefixes verified for the app;
    /// videos under them are pulled by TikTok instead of uploaded in chunks.
    pub pull_from_url_prefixes: Vec<String>,
    /// `TIKTOK_SCOPES`: comma-separated scopes to request (add `video.list` where the app is
    /// approved for it: a pulled public post whose init answer was lost is then looked up).
    pub scopes: Option<Vec<String>>,
}

impl PlatformSettings for TiktokSettings {
    const PREFIX: &'static str = "TIKTOK_";
    const TWIN: &'static str = "tiktok";

    fn from_vars(vars: &Vars<'_>) -> Result<Self, SettingError> {
        let prefixes = vars.text("PULL_FROM_URL_PREFIXES").unwrap_or_default();
        Ok(Self {
            chunk_bytes: vars.parse("CHUNK_BYTES")?,
            pull_from_url_prefixes: list(&prefixes, &[',']),
            // TikTok separates scopes with commas; spaces are forgiven.
            scopes: vars
                .text("SCOPES")
                .map(|s| list(&s, &[',', ' ', '\t', '\n'])),
        })
    }

    fn adapter(self, app: App, with: &Services<'_>) -> anyhow::Result<Arc<dyn PlatformAdapter>> {
        // Every TikTok token call carries the client secret.
        let secret = app.required_secret()?;
        let timeout = app.request_timeout;
        let mut config = app.config(secret, TiktokConfig::new, TiktokConfig::for_base);
        config.request_timeout = timeout.unwrap_or(config.request_timeout);
        config.chunk_bytes = self.chunk_bytes.unwrap_or(config.chunk_bytes);
        config.pull_from_url_prefixes = self.pull_from_url_prefixes;
        config.scopes = self.scopes.unwrap_or(config.scopes);
        config.media_policy = with.media_policy.clone();
        Ok(Arc::new(TiktokAdapter::new(config)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platforms::settings::PlatformEnv;

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
