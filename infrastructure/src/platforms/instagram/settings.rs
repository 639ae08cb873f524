//! What an operator sets for Instagram (`INSTAGRAM_*`), and how the adapter is built from it.
use super::{InstagramAdapter, InstagramConfig, VideoUpload};
use crate::platforms::settings::prelude::*;

pub const ENTRY: PlatformEntry =
    PlatformEntry::of::<InstagramSettings>(herald_domain::Platform::Instagram);

/// Besides the shared `INSTAGRAM_CLIENT_ID`, `INSTAGRAM_CLIENT_SECRET` (the Meta app; may be
/// the Pages app), `INSTAGRAM_API_BASE` (like `FACEBOOK_PAGES_API_BASE`) and
/// `INSTAGRAM_REQUEST_TIMEOUT_SECS`: the settings below. Unset, each keeps
/// [`InstagramConfig`]'s default.
#[derive(Debug, Clone)]
pub struct InstagramSettings {
    /// `INSTAGRAM_PUBLISH_QUOTA`: posts per account per 24 hours when Meta gives no figure,
    /// and a cap on the one it gives.
    pub publish_quota: Option<u32>,
    /// `INSTAGRAM_VIDEO_UPLOAD`: `resumable` (Herald uploads videos to Meta, resuming after a
    /// failure; needs Facebook Login for Business) or `url` (Meta fetches them).
    pub video_upload: Option<VideoUpload>,
    /// `INSTAGRAM_UPLOAD_CHUNK_BYTES`: bytes per resumable-upload request.
    pub upload_chunk_bytes: Option<u64>,
}

impl PlatformSettings for InstagramSettings {
    const PREFIX: &'static str = "INSTAGRAM_";
    const TWIN: &'static str = "meta";

    fn from_vars(vars: &Vars<'_>) -> Result<Self, SettingError> {
        Ok(Self {
            publish_quota: vars.parse("PUBLISH_QUOTA")?,
            video_upload: vars.parse("VIDEO_UPLOAD")?,
            upload_chunk_bytes: vars.parse("UPLOAD_CHUNK_BYTES")?,
        })
    }

    fn adapter(self, app: App, with: &Services<'_>) -> anyhow::Result<Arc<dyn PlatformAdapter>> {
        // Facebook Login's server flow sends the app secret with every token call.
        let secret = app.required_secret()?;
        let timeout = app.request_timeout;
        let mut config = app.config(secret, InstagramConfig::new, InstagramConfig::for_base);
        config.graph.request_timeout = timeout.unwrap_or(config.graph.request_timeout);
        if let Some(quota) = self.publish_quota {
            config.publish_quota_cap = Some(quota);
            config.publish_quota_fallback = quota;
        }
        config.video_upload = self.video_upload.unwrap_or(config.video_upload);
        if let Some(bytes) = self.upload_chunk_bytes {
            config.upload_chunk_bytes = bytes.max(1);
        }
        config.media_policy = with.media_policy.clone();
        Ok(Arc::new(InstagramAdapter::new(config)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platforms::settings::PlatformEnv;

    #[test]
    fn video_upload_default_override_and_bad_value() {
        let mut env = PlatformEnv::default();
        let upload = |env: &PlatformEnv| InstagramSettings::from_env(env).map(|s| s.video_upload);
        assert_eq!(upload(&env), Ok(None));
        env.set("INSTAGRAM_VIDEO_UPLOAD", "URL");
        assert_eq!(upload(&env), Ok(Some(VideoUpload::Url)));
        env.set("INSTAGRAM_VIDEO_UPLOAD", "ftp");
        let bad = upload(&env).unwrap_err();
        assert_eq!(bad.variable, "INSTAGRAM_VIDEO_UPLOAD");
        assert!(
            bad.to_string().contains("neither `resumable` nor `url`"),
            "{bad}"
        );
    }
}
