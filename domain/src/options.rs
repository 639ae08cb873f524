//! Per-platform publishing options: what one platform needs beyond text and media (a YouTube
//! privacy status, a subreddit, a TikTok post mode, ...). A publish request carries one
//! `PublishOptions`; each job reads only its own platform's part, so one request can go to every
//! platform at once. Each platform's options are checked when a job is accepted.
use serde::{Deserialize, Serialize};

use crate::Platform;

/// Options for every platform; absent parts take the platform's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublishOptions {
    pub youtube: YoutubeOptions,
    pub tiktok: TiktokOptions,
    pub instagram: InstagramOptions,
    pub facebook_pages: FacebookPagesOptions,
    pub linkedin: LinkedinOptions,
    pub reddit: RedditOptions,
}

/// Why a platform's options cannot be used. The message names the option and what to give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("options.{platform}.{option}: {problem}")]
pub struct OptionsError {
    pub platform: Platform,
    pub option: &'static str,
    pub problem: String,
}

impl OptionsError {
    pub fn new(platform: Platform, option: &'static str, problem: impl Into<String>) -> Self {
        Self {
            platform,
            option,
            problem: problem.into(),
        }
    }
}

impl PublishOptions {
    /// Checks the options of `platform`; other platforms' options are ignored.
    pub fn check_for(&self, platform: Platform) -> Result<(), OptionsError> {
        match platform {
            Platform::Youtube => self.youtube.check(),
            Platform::Tiktok => self.tiktok.check(),
            Platform::Instagram => self.instagram.check(),
            Platform::FacebookPages => self.facebook_pages.check(),
            Platform::Linkedin => self.linkedin.check(),
            Platform::Reddit => self.reddit.check(),
            Platform::X | Platform::Threads => Ok(()),
        }
    }
}

/// YouTube `videos.insert` metadata beyond title and description.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct YoutubeOptions {
    /// `public`, `unlisted` or `private` (the default: nothing goes public by accident).
    pub privacy: Option<String>,
    pub category_id: Option<String>,
    pub tags: Vec<String>,
    pub made_for_kids: Option<bool>,
    /// Set as the video's custom thumbnail once uploaded.
    pub thumbnail_url: Option<String>,
    /// Publish as a Short (vertical video of at most 3 minutes).
    pub shorts: bool,
}

impl YoutubeOptions {
    fn check(&self) -> Result<(), OptionsError> {
        if let Some(privacy) = &self.privacy {
            if !matches!(privacy.as_str(), "public" | "unlisted" | "private") {
                return Err(OptionsError::new(
                    Platform::Youtube,
                    "privacy",
                    format!("'{privacy}' is not one of public, unlisted, private"),
                ));
            }
        }
        Ok(())
    }
}

/// TikTok Content Posting options.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TiktokOptions {
    /// `direct` (Direct Post, the default) or `inbox` (the user finishes the post in the app).
    pub mode: Option<String>,
    /// One of the creator's `privacy_level_options`, e.g. `SELF_ONLY`, `PUBLIC_TO_EVERYONE`.
    pub privacy_level: Option<String>,
    pub disable_comment: bool,
    pub disable_duet: bool,
    pub disable_stitch: bool,
    /// The content is AI-generated.
    pub is_aigc: bool,
    /// Photo posts: which image is the cover (0-based).
    pub photo_cover_index: Option<u32>,
}

/// TikTok's privacy levels; each creator may use some of them (`creator_info`).
const TIKTOK_PRIVACY_LEVELS: [&str; 4] = [
    "PUBLIC_TO_EVERYONE",
    "MUTUAL_FOLLOW_FRIENDS",
    "FOLLOWER_OF_CREATOR",
    "SELF_ONLY",
];

impl TiktokOptions {
    fn check(&self) -> Result<(), OptionsError> {
        if let Some(mode) = &self.mode {
            if !matches!(mode.as_str(), "direct" | "inbox") {
                return Err(OptionsError::new(
                    Platform::Tiktok,
                    "mode",
                    format!("'{mode}' is not one of direct, inbox"),
                ));
            }
        }
        if let Some(privacy) = &self.privacy_level {
            if !TIKTOK_PRIVACY_LEVELS.contains(&privacy.as_str()) {
                return Err(OptionsError::new(
                    Platform::Tiktok,
                    "privacy_level",
                    format!(
                        "'{privacy}' is not one of {}",
                        TIKTOK_PRIVACY_LEVELS.join(", ")
                    ),
                ));
            }
        }
        if let Some(cover) = self.photo_cover_index {
            // A photo post has at most 35 images.
            if cover >= 35 {
                return Err(OptionsError::new(
                    Platform::Tiktok,
                    "photo_cover_index",
                    format!(
                        "{cover} is past the last photo (a post has at most 35; counting from 0)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Instagram placement.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InstagramOptions {
    /// `feed` (the default), `reels` or `stories`.
    pub placement: Option<String>,
}

impl InstagramOptions {
    fn check(&self) -> Result<(), OptionsError> {
        if let Some(placement) = &self.placement {
            if !matches!(placement.as_str(), "feed" | "reels" | "stories") {
                return Err(OptionsError::new(
                    Platform::Instagram,
                    "placement",
                    format!("'{placement}' is not one of feed, reels, stories"),
                ));
            }
        }
        Ok(())
    }
}

/// Facebook Page post options.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FacebookPagesOptions {
    /// `feed` (the default: a post on the Page) or `reels` (one vertical video published as a
    /// reel through the Reels Publishing API).
    pub placement: Option<String>,
}

impl FacebookPagesOptions {
    /// Whether the post is to be published as a reel.
    pub fn is_reel(&self) -> bool {
        self.placement.as_deref() == Some("reels")
    }

    fn check(&self) -> Result<(), OptionsError> {
        if let Some(placement) = &self.placement {
            if !matches!(placement.as_str(), "feed" | "reels") {
                return Err(OptionsError::new(
                    Platform::FacebookPages,
                    "placement",
                    format!("'{placement}' is not one of feed, reels"),
                ));
            }
        }
        Ok(())
    }
}

/// LinkedIn post options.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkedinOptions {
    /// `PUBLIC` (the default) or `CONNECTIONS`.
    pub visibility: Option<String>,
}

impl LinkedinOptions {
    fn check(&self) -> Result<(), OptionsError> {
        if let Some(visibility) = &self.visibility {
            if !matches!(visibility.as_str(), "PUBLIC" | "CONNECTIONS") {
                return Err(OptionsError::new(
                    Platform::Linkedin,
                    "visibility",
                    format!("'{visibility}' is not one of PUBLIC, CONNECTIONS"),
                ));
            }
        }
        Ok(())
    }
}

/// Reddit submission options.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedditOptions {
    /// The subreddit to submit to, without `r/`. Required.
    pub subreddit: Option<String>,
    pub flair_id: Option<String>,
    pub flair_text: Option<String>,
    pub nsfw: bool,
    pub spoiler: bool,
    /// The poster image of a video post (`video_poster_url`), shown before the video plays.
    /// Required for a video: Herald does not grab a frame from the video itself.
    pub thumbnail_url: Option<String>,
    /// Post the video as a muted, looping `videogif` instead of a `video`.
    pub videogif: bool,
}

impl RedditOptions {
    fn check(&self) -> Result<(), OptionsError> {
        let subreddit = self
            .subreddit
            .as_deref()
            .map(|s| s.trim().trim_start_matches("r/"))
            .unwrap_or_default();
        if subreddit.is_empty() {
            return Err(OptionsError::new(
                Platform::Reddit,
                "subreddit",
                "Reddit posts go to a subreddit: give its name, e.g. \"rust\"",
            ));
        }
        let valid = (3..=21).contains(&subreddit.len())
            && subreddit
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(OptionsError::new(
                Platform::Reddit,
                "subreddit",
                format!("'{subreddit}' is not a subreddit name (3-21 letters, digits or _)"),
            ));
        }
        if let Some(thumbnail) = &self.thumbnail_url {
            let scheme = url::Url::parse(thumbnail.trim())
                .ok()
                .map(|u| u.scheme().to_owned());
            if !matches!(scheme.as_deref(), Some("http" | "https")) {
                return Err(OptionsError::new(
                    Platform::Reddit,
                    "thumbnail_url",
                    "must be an absolute http(s) URL of a JPEG, PNG or GIF image",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_platform_checks_only_its_own_options() {
        let options = PublishOptions {
            youtube: YoutubeOptions {
                privacy: Some("secret".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(options.check_for(Platform::X).is_ok());
        let error = options.check_for(Platform::Youtube).unwrap_err();
        assert_eq!(error.option, "privacy");
        assert!(error.to_string().contains("public, unlisted, private"));
    }

    #[test]
    fn reddit_needs_a_valid_subreddit() {
        let mut options = PublishOptions::default();
        let error = options.check_for(Platform::Reddit).unwrap_err();
        assert!(error.to_string().contains("options.reddit.subreddit"));
        options.reddit.subreddit = Some("r/rust".into());
        assert!(options.check_for(Platform::Reddit).is_ok());
        options.reddit.subreddit = Some("no spaces allowed".into());
        assert!(options.check_for(Platform::Reddit).is_err());
        options.reddit.subreddit = Some("rust".into());
        options.reddit.thumbnail_url = Some("poster.png".into());
        let error = options.check_for(Platform::Reddit).unwrap_err();
        assert_eq!(error.option, "thumbnail_url");
        options.reddit.thumbnail_url = Some("https://cdn.example.com/poster.png".into());
        assert!(options.check_for(Platform::Reddit).is_ok());
    }

    #[test]
    fn tiktok_privacy_levels_are_tiktoks_own() {
        let mut options = PublishOptions::default();
        options.tiktok.privacy_level = Some("PUBLIC".into());
        let error = options.check_for(Platform::Tiktok).unwrap_err();
        assert_eq!(error.option, "privacy_level");
        assert!(error.to_string().contains("SELF_ONLY"));
        options.tiktok.privacy_level = Some("SELF_ONLY".into());
        assert!(options.check_for(Platform::Tiktok).is_ok());
        options.tiktok.photo_cover_index = Some(35);
        assert_eq!(
            options.check_for(Platform::Tiktok).unwrap_err().option,
            "photo_cover_index"
        );
    }

    #[test]
    fn given_a_facebook_placement_when_checked_then_only_feed_and_reels_pass() {
        let mut options = PublishOptions::default();
        assert!(options.check_for(Platform::FacebookPages).is_ok());
        assert!(!options.facebook_pages.is_reel(), "feed is the default");
        options.facebook_pages.placement = Some("reels".into());
        assert!(options.check_for(Platform::FacebookPages).is_ok());
        assert!(options.facebook_pages.is_reel());
        options.facebook_pages.placement = Some("stories".into());
        assert_eq!(
            options.check_for(Platform::FacebookPages),
            Err(OptionsError::new(
                Platform::FacebookPages,
                "placement",
                "'stories' is not one of feed, reels"
            ))
        );
        assert!(options.check_for(Platform::Instagram).is_ok());
    }

    #[test]
    fn unknown_option_names_are_refused() {
        let parsed: Result<PublishOptions, _> =
            serde_json::from_value(serde_json::json!({"youtube": {"privcy": "public"}}));
        assert!(parsed.is_err());
    }
}
