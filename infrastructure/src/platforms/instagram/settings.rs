//! What an operator sets for Instagram (`INSTAGRAM_*`), and how the adapter is built from it.
use std::sync::Arc;

use super::{InstagramAdapter, InstagramConfig, VideoUpload};
use crate::platforms::registry::PlatformEntry;
use crate::platforms::settings::{AppSettings, PlatformEnv, Services, SettingError};
use crate::platforms::PlatformAdapter;

pub const ENTRY: PlatformEntry = PlatformEntry {
    platform: herald_domain::Platform::Instagram,
    env_prefix: "INSTAGRAM_",
    also_reads: &[],
    twin: "meta",
    build,
};

/// `INSTAGRAM_CLIENT_ID` and `INSTAGRAM_CLIENT_SECRET` (the Meta app; may be the Pages app),
/// `INSTAGRAM_API_BASE` (like `FACEBOOK_PAGES_API_BASE`), `INSTAGRAM_REQUEST_TIMEOUT_SECS`, and
/// the settings below; unset, each keeps [`InstagramConfig`]'s default.
#[derive(Debug, Clone)]
pub struct InstagramSettings {
    pub app: AppSettings,
    /// `INSTAGRAM_PUBLISH_QUOTA`: posts per account per 24 hours when Meta gives no figure,
    /// and a cap on the one it gives.
    pub publish_quota: Option<u32>,
    /// `INSTAGRAM_VIDEO_UPLOAD`: `resumable` (Herald uploads videos to Meta, resuming after a
    /// failure; needs Facebook Login for Business) or `url` (Meta fetches them).
    pub video_upload: Option<VideoUpload>,
    /// `INSTAGRAM_UPLOAD_CHUNK_BYTES`: bytes per resumable-upload request.
    pub upload_chunk_bytes: Option<u64>,
}

impl InstagramSettings {
    pub fn from_env(env: &PlatformEnv) -> Result<Self, SettingError> {
        let vars = env.scoped(ENTRY.env_prefix);
        Ok(Self {
            app: AppSettings::from_env(&vars)?,
            publish_quota: vars.parse("PUBLISH_QUOTA")?,
            video_upload: vars.parse("VIDEO_UPLOAD")?,
            upload_chunk_bytes: vars.parse("UPLOAD_CHUNK_BYTES")?,
        })
    }
}

fn build(
    env: &PlatformEnv,
    services: &Services<'_>,
) -> anyhow::Result<Option<Arc<dyn PlatformAdapter>>> {
    let settings = InstagramSettings::from_env(env)?;
    let Some(app) = settings.app.app(services.twin(ENTRY.twin))? else {
        return Ok(None);
    };
    // Facebook Login's server flow sends the app secret with every token call.
    let secret = app.required_secret()?;
    let mut config = app.config(secret, InstagramConfig::new, InstagramConfig::for_base);
    if let Some(timeout) = settings.app.request_timeout {
        config.graph.request_timeout = timeout;
    }
    if let Some(quota) = settings.publish_quota {
        config.publish_quota_cap = Some(quota);
        config.publish_quota_fallback = quota;
    }
    if let Some(upload) = settings.video_upload {
        config.video_upload = upload;
    }
    if let Some(bytes) = settings.upload_chunk_bytes {
        config.upload_chunk_bytes = bytes.max(1);
    }
    config.media_policy = services.media_policy.clone();
    Ok(Some(Arc::new(InstagramAdapter::new(config)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_upload_default_override_and_bad_value() {
        let mut env = PlatformEnv::default();
        assert_eq!(
            InstagramSettings::from_env(&env).unwrap().video_upload,
            None
        );
        env.set("INSTAGRAM_VIDEO_UPLOAD", "URL");
        assert_eq!(
            InstagramSettings::from_env(&env).unwrap().video_upload,
            Some(VideoUpload::Url)
        );
        env.set("INSTAGRAM_VIDEO_UPLOAD", "ftp");
        let bad = InstagramSettings::from_env(&env).unwrap_err();
        assert_eq!(bad.variable, "INSTAGRAM_VIDEO_UPLOAD");
        assert!(
            bad.to_string().contains("neither `resumable` nor `url`"),
            "{bad}"
        );
    }
}
