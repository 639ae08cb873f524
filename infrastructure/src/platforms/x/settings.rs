//! What an operator sets for X (`X_*`), and how the adapter is built from it.
use super::{XAdapter, XConfig};
use crate::platforms::settings::prelude::*;

pub const ENTRY: PlatformEntry = PlatformEntry::of::<XSettings>(herald_domain::Platform::X);

/// X has only the shared settings: `X_CLIENT_ID` (a confidential client: give
/// `X_CLIENT_SECRET` too), `X_API_BASE` (with a custom base, OAuth endpoints live under it) and
/// `X_REQUEST_TIMEOUT_SECS`.
#[derive(Debug, Clone)]
pub struct XSettings;

impl PlatformSettings for XSettings {
    const PREFIX: &'static str = "X_";
    const TWIN: &'static str = "x";

    fn from_vars(_: &Vars<'_>) -> Result<Self, SettingError> {
        Ok(Self)
    }

    fn adapter(self, app: App, with: &Services<'_>) -> anyhow::Result<Arc<dyn PlatformAdapter>> {
        let (secret, timeout) = (app.client_secret.clone(), app.request_timeout);
        let mut config = app.config(secret, XConfig::new, XConfig::for_base);
        config.request_timeout = timeout.unwrap_or(config.request_timeout);
        config.media_policy = with.media_policy.clone();
        Ok(Arc::new(XAdapter::new(config)?))
    }
}
