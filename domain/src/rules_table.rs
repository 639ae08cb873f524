//! The content rules a deployment runs with: the defaults from platform-facts, adjusted per
//! platform from configuration (an X account with long posts, a stricter video size, a format
//! a platform has started to accept). The adjustments travel in `SchedulePublish`, so the
//! aggregate decides from data it was given and a job's rules are those it was accepted under.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::content::{ContentRules, VideoLimits};
use crate::Platform;

/// Changes to one platform's rules; every field left out keeps its default.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_text: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_media: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_title: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_hashtags: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gif_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoLimitsOverride>,
    /// Changes to the limits of a reel's video (Facebook Pages reels: Meta has changed them
    /// before, from 4-60 s to 3-90 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reel_video: Option<VideoLimitsOverride>,
}

/// Changes to a platform's video limits (placement-specific limits such as Instagram stories
/// and YouTube Shorts keep their documented values; Facebook reels have `reel_video`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoLimitsOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_secs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_secs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_side: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_height: Option<u32>,
    /// Width divided by height.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_aspect: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_aspect: Option<f64>,
}

/// Why a rules configuration cannot be used; names the platform and the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesConfigError {
    #[error("content rules: {0}")]
    Unreadable(String),
    #[error("content rules for {platform}: {setting} {problem}")]
    Invalid {
        platform: Platform,
        setting: &'static str,
        problem: String,
    },
}

impl RulesOverride {
    /// Refuses values no platform could mean (a zero text limit, an inverted range, a MIME type
    /// without a subtype).
    pub fn check(&self, platform: Platform) -> Result<(), RulesConfigError> {
        let invalid = |setting: &'static str, problem: &str| RulesConfigError::Invalid {
            platform,
            setting,
            problem: problem.to_string(),
        };
        let positive = [
            ("max_text", self.max_text),
            ("max_media", self.max_media),
            ("max_title", self.max_title),
        ];
        for (setting, value) in positive {
            if value == Some(0) {
                return Err(invalid(setting, "must be at least 1"));
            }
        }
        let lists = [
            ("image_types", &self.image_types),
            ("video_types", &self.video_types),
            ("gif_types", &self.gif_types),
            ("document_types", &self.document_types),
        ];
        for (setting, list) in lists {
            let malformed = list.iter().flatten().find(|t| !is_mime_type(t));
            if let Some(t) = malformed {
                return Err(invalid(
                    setting,
                    &format!("'{t}' is not a MIME type like image/png"),
                ));
            }
        }
        let videos = [
            (
                &self.video,
                [
                    "video.min_secs/max_secs",
                    "video.min_aspect/max_aspect",
                    "video.max_bytes/max_side",
                ],
            ),
            (
                &self.reel_video,
                [
                    "reel_video.min_secs/max_secs",
                    "reel_video.min_aspect/max_aspect",
                    "reel_video.max_bytes/max_side",
                ],
            ),
        ];
        for (video, [secs, aspect, size]) in videos {
            let Some(video) = video else {
                continue;
            };
            let limits = video.apply(VideoLimits::unbounded());
            if !(limits.min_secs >= 0.0 && limits.min_secs <= limits.max_secs) {
                return Err(invalid(secs, "must satisfy 0 <= min_secs <= max_secs"));
            }
            if !(limits.aspect.0 >= 0.0 && limits.aspect.0 <= limits.aspect.1) {
                return Err(invalid(
                    aspect,
                    "must satisfy 0 <= min_aspect <= max_aspect",
                ));
            }
            if limits.max_bytes == 0 || limits.max_side == 0 {
                return Err(invalid(size, "must be at least 1"));
            }
        }
        Ok(())
    }
}

fn is_mime_type(value: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
    };
    matches!(value.split_once('/'), Some((kind, sub)) if token(kind) && token(sub))
}

impl VideoLimitsOverride {
    fn apply(&self, limits: VideoLimits) -> VideoLimits {
        VideoLimits {
            min_secs: self.min_secs.unwrap_or(limits.min_secs),
            max_secs: self.max_secs.unwrap_or(limits.max_secs),
            max_bytes: self.max_bytes.unwrap_or(limits.max_bytes),
            max_side: self.max_side.unwrap_or(limits.max_side),
            min_width: self.min_width.unwrap_or(limits.min_width),
            min_height: self.min_height.unwrap_or(limits.min_height),
            aspect: (
                self.min_aspect.unwrap_or(limits.aspect.0),
                self.max_aspect.unwrap_or(limits.aspect.1),
            ),
        }
    }
}

impl ContentRules {
    /// These rules with a deployment's changes applied.
    pub fn adjusted(mut self, changes: &RulesOverride) -> ContentRules {
        let RulesOverride {
            max_text,
            max_media,
            max_title,
            max_hashtags,
            image_types,
            video_types,
            gif_types,
            document_types,
            video,
            reel_video,
        } = changes;
        self.max_text = max_text.unwrap_or(self.max_text);
        self.max_media = max_media.unwrap_or(self.max_media);
        if max_title.is_some() {
            self.max_title = *max_title;
        }
        if max_hashtags.is_some() {
            self.max_hashtags = *max_hashtags;
        }
        if let Some(types) = image_types {
            self.image_types.clone_from(types);
        }
        if let Some(types) = video_types {
            self.video_types.clone_from(types);
        }
        if let Some(types) = gif_types {
            self.gif_types.clone_from(types);
        }
        if let Some(types) = document_types {
            self.document_types.clone_from(types);
        }
        if let Some(video) = video {
            self.video = Some(video.apply(self.video.unwrap_or_else(VideoLimits::unbounded)));
        }
        if let Some(video) = reel_video {
            self.reel_video =
                Some(video.apply(self.reel_video.unwrap_or_else(VideoLimits::unbounded)));
        }
        self
    }
}

/// Every platform's adjustments, as configured. Empty: the documented defaults everywhere.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RulesTable {
    by_platform: BTreeMap<Platform, RulesOverride>,
}

impl RulesTable {
    /// Reads `{"x": {"max_text": 25000}, "instagram": {"video": {"max_secs": 180}}}`; an
    /// unknown platform or setting, or a value no platform could mean, is refused.
    pub fn from_json(json: &str) -> Result<RulesTable, RulesConfigError> {
        let table: RulesTable =
            serde_json::from_str(json).map_err(|e| RulesConfigError::Unreadable(e.to_string()))?;
        for (platform, changes) in &table.by_platform {
            changes.check(*platform)?;
        }
        Ok(table)
    }

    /// The adjustments configured for `platform` (none: an empty override).
    pub fn override_for(&self, platform: Platform) -> RulesOverride {
        self.by_platform.get(&platform).cloned().unwrap_or_default()
    }

    /// The rules `platform` runs with here.
    pub fn rules_for(&self, platform: Platform) -> ContentRules {
        ContentRules::for_platform(platform).adjusted(&self.override_for(platform))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::ContentError;
    use crate::Content;

    fn text(text: &str) -> Content {
        Content {
            text: text.into(),
            ..Content::default()
        }
    }

    #[test]
    fn given_no_configuration_when_rules_are_asked_then_the_documented_defaults_apply() {
        let table = RulesTable::default();
        for platform in Platform::ALL {
            assert_eq!(
                table.rules_for(platform),
                ContentRules::for_platform(platform)
            );
        }
    }

    #[test]
    fn given_a_longer_x_limit_when_a_long_post_is_prepared_then_it_passes_only_on_x() {
        let table = RulesTable::from_json(r#"{"x": {"max_text": 25000}}"#).unwrap();
        let long = text(&"word ".repeat(200));
        assert!(table.rules_for(Platform::X).prepare(&long).is_ok());
        assert_eq!(
            ContentRules::for_platform(Platform::X).prepare(&long),
            Err(ContentError::TextTooLong {
                platform: Platform::X,
                limit: 280,
                length: 999,
            })
        );
        assert!(matches!(
            table.rules_for(Platform::Threads).prepare(&long),
            Err(ContentError::TextTooLong { limit: 500, .. })
        ));
    }

    #[test]
    fn given_video_changes_when_applied_then_only_the_named_limits_change() {
        let table =
            RulesTable::from_json(r#"{"instagram": {"video": {"max_secs": 180}}}"#).unwrap();
        let video = table.rules_for(Platform::Instagram).video.unwrap();
        let default = ContentRules::for_platform(Platform::Instagram)
            .video
            .unwrap();
        assert_eq!(video.max_secs, 180.0);
        assert_eq!(
            VideoLimits {
                max_secs: default.max_secs,
                ..video
            },
            default
        );
    }

    #[test]
    fn given_new_formats_when_applied_then_they_replace_the_list() {
        let table = RulesTable::from_json(
            r#"{"instagram": {"image_types": ["image/jpeg", "image/heic"]}}"#,
        )
        .unwrap();
        assert_eq!(
            table.rules_for(Platform::Instagram).image_types,
            vec!["image/jpeg".to_string(), "image/heic".to_string()]
        );
        let pdf_only =
            RulesTable::from_json(r#"{"linkedin": {"document_types": ["application/pdf"]}}"#)
                .unwrap();
        assert_eq!(
            pdf_only.rules_for(Platform::Linkedin).document_types,
            vec!["application/pdf".to_string()]
        );
    }

    #[test]
    fn given_a_bad_configuration_when_read_then_it_is_refused_with_the_setting_named() {
        assert!(matches!(
            RulesTable::from_json(r#"{"myspace": {}}"#),
            Err(RulesConfigError::Unreadable(_))
        ));
        assert!(matches!(
            RulesTable::from_json(r#"{"x": {"max_chars": 10}}"#),
            Err(RulesConfigError::Unreadable(_))
        ));
        assert_eq!(
            RulesTable::from_json(r#"{"x": {"max_text": 0}}"#),
            Err(RulesConfigError::Invalid {
                platform: Platform::X,
                setting: "max_text",
                problem: "must be at least 1".into(),
            })
        );
        assert!(matches!(
            RulesTable::from_json(r#"{"tiktok": {"video": {"min_secs": 10, "max_secs": 5}}}"#),
            Err(RulesConfigError::Invalid {
                setting: "video.min_secs/max_secs",
                ..
            })
        ));
        assert!(matches!(
            RulesTable::from_json(r#"{"reddit": {"image_types": ["png"]}}"#),
            Err(RulesConfigError::Invalid {
                setting: "image_types",
                ..
            })
        ));
    }

    #[test]
    fn given_reddit_limits_configured_when_applied_then_galleries_and_videos_follow_them() {
        let table = RulesTable::from_json(
            r#"{"reddit": {"max_media": 10, "video": {"max_secs": 60, "max_bytes": 104857600}}}"#,
        )
        .unwrap();
        let reddit = table.rules_for(Platform::Reddit);
        assert_eq!(reddit.max_media, 10);
        let video = reddit.video.unwrap();
        assert_eq!((video.max_secs, video.max_bytes), (60.0, 100 * 1024 * 1024));
        let mut gallery = text("pics");
        gallery.options.reddit.subreddit = Some("rust".into());
        gallery.media = (0..11)
            .map(|n| crate::MediaItem {
                url: format!("https://cdn.example.com/{n}.png"),
                kind: crate::MediaKind::Image,
                mime_type: "image/png".into(),
                probe: None,
            })
            .collect();
        assert_eq!(
            reddit.prepare(&gallery),
            Err(ContentError::TooManyImages {
                platform: Platform::Reddit,
                limit: 10,
                count: 11,
            })
        );
    }

    #[test]
    fn given_reel_video_changes_when_applied_then_only_the_reel_limits_change() {
        let table = RulesTable::from_json(
            r#"{"facebook_pages": {"reel_video": {"max_secs": 60, "min_width": 720}}}"#,
        )
        .unwrap();
        let rules = table.rules_for(Platform::FacebookPages);
        let default = ContentRules::for_platform(Platform::FacebookPages);
        let reel = rules.reel_video.unwrap();
        assert_eq!((reel.max_secs, reel.min_width), (60.0, 720));
        assert_eq!(
            VideoLimits {
                max_secs: 90.0,
                min_width: 540,
                ..reel
            },
            default.reel_video.unwrap()
        );
        assert_eq!(rules.video, default.video, "feed videos keep their limits");
        assert!(matches!(
            RulesTable::from_json(
                r#"{"facebook_pages": {"reel_video": {"min_secs": 10, "max_secs": 5}}}"#
            ),
            Err(RulesConfigError::Invalid {
                setting: "reel_video.min_secs/max_secs",
                ..
            })
        ));
    }

    #[test]
    fn given_a_platform_without_video_limits_when_some_are_set_then_the_rest_stay_unbounded() {
        let table = RulesTable::from_json(r#"{"threads": {"video": {"max_secs": 300}}}"#).unwrap();
        assert_eq!(
            table.rules_for(Platform::Threads).video,
            Some(VideoLimits {
                max_secs: 300.0,
                ..VideoLimits::unbounded()
            })
        );
    }
}
