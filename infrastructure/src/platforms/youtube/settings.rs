//! What an operator sets for YouTube (`YOUTUBE_*`), and how the adapter is built from it.
use std::sync::Arc;

use super::{InsertQuota, YouTubeAdapter, YouTubeConfig};
use crate::platforms::registry::PlatformEntry;
use crate::platforms::settings::{AppSettings, PlatformEnv, Services, SettingError};
use crate::platforms::PlatformAdapter;

pub const ENTRY: PlatformEntry = PlatformEntry {
    platform: herald_domain::Platform::Youtube,
    env_prefix: "YOUTUBE_",
    also_reads: &[],
    twin: "youtube",
    build,
};

/// `YOUTUBE_CLIENT_ID` and `YOUTUBE_CLIENT_SECRET` (the project's OAuth web client),
/// `YOUTUBE_API_BASE`, `YOUTUBE_REQUEST_TIMEOUT_SECS` (upload chunks get at least their own
/// timeout), and the chunking and quota settings below. Unset, each keeps
/// [`YouTubeConfig`]'s default.
#[derive(Debug, Clone)]
pub struct YouTubeSettings {
    pub app: AppSettings,
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
    pub fn from_env(env: &PlatformEnv) -> Result<Self, SettingError> {
        let vars = env.scoped(ENTRY.env_prefix);
        Ok(Self {
            app: AppSettings::from_env(&vars)?,
            chunk_bytes: vars.parse("CHUNK_BYTES")?,
            daily_quota_units: vars.parse("DAILY_QUOTA_UNITS")?,
            insert_quota_cost: vars.parse("INSERT_QUOTA_COST")?,
            inserts_per_day: vars.parse("INSERTS_PER_DAY")?,
        })
    }

    /// Applies what is set to `config`.
    pub fn apply(&self, config: &mut YouTubeConfig) {
        if let Some(timeout) = self.app.request_timeout {
            config.request_timeout = timeout;
        }
        config.chunk_timeout = config.chunk_timeout.max(config.request_timeout);
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

fn build(
    env: &PlatformEnv,
    services: &Services<'_>,
) -> anyhow::Result<Option<Arc<dyn PlatformAdapter>>> {
    let settings = YouTubeSettings::from_env(env)?;
    let Some(app) = settings.app.app(services.twin(ENTRY.twin))? else {
        return Ok(None);
    };
    // A web client: Google's token endpoint wants the secret with every call.
    let secret = app.required_secret()?;
    let mut config = app.config(secret, YouTubeConfig::new, YouTubeConfig::for_base);
    settings.apply(&mut config);
    config.media_policy = services.media_policy.clone();
    Ok(Some(Arc::new(YouTubeAdapter::new(config)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
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
