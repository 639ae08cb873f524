//! What an operator sets for YouTube (`YOUTUBE_*`), and how the adapter is built from it.
use super::{InsertQuota, YouTubeAdapter, YouTubeConfig};
use crate::platforms::settings::prelude::*;

pub const ENTRY: PlatformEntry =
    PlatformEntry::of::<YouTubeSettings>(herald_domain::Platform::Youtube);

/// Besides the shared `YOUTUBE_CLIENT_ID`, `YOUTUBE_CLIENT_SECRET` (the project's OAuth web
/// client), `YOUTUBE_API_BASE` and `YOUTUBE_REQUEST_TIMEOUT_SECS` (upload chunks get at least
/// that too): chunking and the project's quota. Unset, each keeps [`YouTubeConfig`]'s default.
#[derive(Debug, Clone)]
pub struct YouTubeSettings {
    /// `YOUTUBE_CHUNK_BYTES`: bytes per upload chunk (rounded down to a multiple of 256 KiB).
    pub chunk_bytes: Option<usize>,
    /// `YOUTUBE_DAILY_QUOTA_UNITS`: the project's daily units (reset at midnight Pacific).
    pub daily_quota_units: Option<u64>,
    /// `YOUTUBE_INSERT_QUOTA_COST`: units one `videos.insert` costs.
    pub insert_quota_cost: Option<u64>,
    /// `YOUTUBE_INSERTS_PER_DAY`: uploads have a daily bucket of this many calls of their own
    /// instead of costing units.
    pub inserts_per_day: Option<u64>,
}

impl YouTubeSettings {
    /// Applies what is set to `config`.
    pub fn apply(&self, config: &mut YouTubeConfig) {
        if let Some(bytes) = self.chunk_bytes {
            config.chunk_bytes = bytes;
        }
        if let Some(units) = self.daily_quota_units {
            config.quota.daily_units = units;
        }
        match (self.inserts_per_day, self.insert_quota_cost) {
            (Some(per_day), _) => config.quota.insert = InsertQuota::Bucket(per_day),
            (None, Some(cost)) => config.quota.insert = InsertQuota::Units(cost),
            (None, None) => {}
        }
    }
}

impl PlatformSettings for YouTubeSettings {
    const PREFIX: &'static str = "YOUTUBE_";
    const TWIN: &'static str = "youtube";

    fn from_vars(vars: &Vars<'_>) -> Result<Self, SettingError> {
        Ok(Self {
            chunk_bytes: vars.parse("CHUNK_BYTES")?,
            daily_quota_units: vars.parse("DAILY_QUOTA_UNITS")?,
            insert_quota_cost: vars.parse("INSERT_QUOTA_COST")?,
            inserts_per_day: vars.parse("INSERTS_PER_DAY")?,
        })
    }

    fn adapter(self, app: App, with: &Services<'_>) -> anyhow::Result<Arc<dyn PlatformAdapter>> {
        // A web client: Google's token endpoint wants the secret with every call.
        let secret = app.required_secret()?;
        let timeout = app.request_timeout;
        let mut config = app.config(secret, YouTubeConfig::new, YouTubeConfig::for_base);
        config.request_timeout = timeout.unwrap_or(config.request_timeout);
        config.chunk_timeout = config.chunk_timeout.max(config.request_timeout);
        self.apply(&mut config);
        config.media_policy = with.media_policy.clone();
        Ok(Arc::new(YouTubeAdapter::new(config)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platforms::settings::PlatformEnv;
    use crate::platforms::youtube::QuotaConfig;
    use crate::secret::Secret;

    fn applied(env: &PlatformEnv) -> YouTubeConfig {
        let mut config = YouTubeConfig::new("id", Secret::new("s"));
        YouTubeSettings::from_env(env).unwrap().apply(&mut config);
        config
    }

    #[test]
    fn quota_default_override_and_bad_value() {
        let mut env = PlatformEnv::default();
        assert_eq!(applied(&env).quota, QuotaConfig::default());
        env.set("YOUTUBE_DAILY_QUOTA_UNITS", "3300")
            .set("YOUTUBE_INSERTS_PER_DAY", "100");
        let quota = applied(&env).quota;
        assert_eq!(quota.daily_units, 3300);
        assert_eq!(quota.insert, InsertQuota::Bucket(100));
        env.set("YOUTUBE_CHUNK_BYTES", "8MiB");
        let bad = YouTubeSettings::from_env(&env).unwrap_err();
        assert_eq!(bad.variable, "YOUTUBE_CHUNK_BYTES");
    }
}
