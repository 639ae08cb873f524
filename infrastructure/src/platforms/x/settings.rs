//! What an operator sets for X (`X_*`), and how the adapter is built from it.
use std::sync::Arc;

use super::{XAdapter, XConfig};
use crate::platforms::registry::PlatformEntry;
use crate::platforms::settings::{AppSettings, PlatformEnv, Services, SettingError};
use crate::platforms::PlatformAdapter;

pub const ENTRY: PlatformEntry = PlatformEntry {
    platform: herald_domain::Platform::X,
    env_prefix: "X_",
    also_reads: &[],
    twin: "x",
    build,
};

/// `X_CLIENT_ID` (a confidential client: give `X_CLIENT_SECRET` too), `X_API_BASE` (with a
/// custom base, OAuth endpoints live under it), `X_REQUEST_TIMEOUT_SECS`.
#[derive(Debug, Clone)]
pub struct XSettings {
    pub app: AppSettings,
}

impl XSettings {
    pub fn from_env(env: &PlatformEnv) -> Result<Self, SettingError> {
        Ok(Self {
            app: AppSettings::from_env(&env.scoped(ENTRY.env_prefix))?,
        })
    }
}

fn build(
    env: &PlatformEnv,
    services: &Services<'_>,
) -> anyhow::Result<Option<Arc<dyn PlatformAdapter>>> {
    let settings = XSettings::from_env(env)?;
    let Some(app) = settings.app.app(services.twin(ENTRY.twin))? else {
        return Ok(None);
    };
    let secret = app.client_secret.clone();
    let mut config = app.config(secret, XConfig::new, XConfig::for_base);
    if let Some(timeout) = settings.app.request_timeout {
        config.request_timeout = timeout;
    }
    config.media_policy = services.media_policy.clone();
    Ok(Some(Arc::new(XAdapter::new(config)?)))
}
