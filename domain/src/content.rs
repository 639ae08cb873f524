//! What a user asks to publish, and the per-platform rules it must pass before a job is accepted.
//! A job stores `PreparedContent`: content already checked and shaped for its platform (a long
//! X text already split into thread parts), so nothing downstream re-decides.
use serde::{Deserialize, Serialize};

use crate::Platform;

/// Kind of a media item; decides the platform's upload category and limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Image,
    Gif,
    Video,
}

/// A media file referenced by URL; Herald streams it to the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaItem {
    pub url: String,
    pub kind: MediaKind,
    /// MIME type, e.g. `image/png`, `video/mp4`.
    pub mime_type: String,
}

/// A poll attached to a post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Poll {
    pub options: Vec<String>,
    pub duration_minutes: u32,
}

/// Content as the user submitted it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Content {
    pub text: String,
    #[serde(default)]
    pub media: Vec<MediaItem>,
    #[serde(default)]
    pub poll: Option<Poll>,
    /// Post a text over the platform's limit as a reply chain instead of refusing it.
    #[serde(default)]
    pub thread: bool,
}

/// Content accepted for one platform: `parts` has one entry per post (more than one only for a
/// thread); media and poll go on the first part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedContent {
    pub parts: Vec<String>,
    pub media: Vec<MediaItem>,
    pub poll: Option<Poll>,
}

/// Why content cannot go to a platform. Each names the rule and its limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    #[error("the post is empty: give it text, media or both")]
    Empty,
    #[error("{platform} allows {limit} characters{}; this text counts {length}. {}", counting_rule(.platform), length_advice(.platform))]
    TextTooLong {
        platform: Platform,
        limit: usize,
        length: usize,
    },
    #[error("{platform} allows at most {limit} images per post; got {count}")]
    TooManyImages {
        platform: Platform,
        limit: usize,
        count: usize,
    },
    #[error("{platform} allows one video or one GIF per post, not mixed with other media; got {count} media items")]
    VideoMustBeAlone { platform: Platform, count: usize },
    #[error("a poll cannot be combined with media on {platform}; remove one of them")]
    PollWithMedia { platform: Platform },
    #[error("{platform} does not support polls; remove the poll")]
    PollsNotSupported { platform: Platform },
    #[error("a thread is not supported on {platform}; shorten the text")]
    ThreadsNotSupported { platform: Platform },
    #[error("media item {index}: {platform} does not take GIFs; post it as an image or video")]
    GifNotSupported { platform: Platform, index: usize },
    #[error("a poll needs 2 to 4 options; got {count}")]
    PollOptionCount { count: usize },
    #[error("poll option {index} must be 1 to 25 characters; it has {length}")]
    PollOptionLength { index: usize, length: usize },
    #[error("a poll lasts 5 to 10080 minutes (7 days); got {minutes}")]
    PollDuration { minutes: u32 },
    #[error("media item {index}: '{mime_type}' is not a supported {kind:?} type on {platform}; use one of {allowed}")]
    UnsupportedMediaType {
        platform: Platform,
        index: usize,
        kind: MediaKind,
        mime_type: String,
        allowed: String,
    },
    #[error("media item {index}: url must be an absolute http(s) URL")]
    InvalidMediaUrl { index: usize },
    #[error("a thread is only possible with text; media and polls go on its first post, which still needs text")]
    ThreadWithoutText,
    #[error("publishing to {platform} is not available yet")]
    PlatformNotSupported { platform: Platform },
}

/// How the platform counts text, for `TextTooLong`.
fn counting_rule(platform: &Platform) -> &'static str {
    match platform {
        Platform::X => " (weighted: URLs count 23, most CJK characters and emoji count 2)",
        Platform::Threads => " (each emoji counts its UTF-8 bytes, usually 4)",
        _ => "",
    }
}

/// What to do about a text that is too long.
fn length_advice(platform: &Platform) -> &'static str {
    match platform {
        Platform::X => "Shorten it, or set \"thread\": true to post it as a reply chain",
        _ => "Shorten it",
    }
}

/// The content limits of one platform (defaults from platform-facts.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentRules {
    pub platform: Platform,
    pub max_text: usize,
    pub max_images: usize,
    pub image_types: &'static [&'static str],
    pub video_types: &'static [&'static str],
    pub gif_types: &'static [&'static str],
    pub supports_polls: bool,
    pub supports_threads: bool,
}

/// Weight of a URL in X's counting, whatever its length.
const X_URL_WEIGHT: usize = 23;

impl ContentRules {
    /// The rules for a platform, or `None` where publishing is not built yet.
    pub fn for_platform(platform: Platform) -> Option<ContentRules> {
        match platform {
            // platform-facts §1.3/§1.4: 280 weighted characters; up to 4 photos, 1 GIF or 1 video.
            Platform::X => Some(ContentRules {
                platform,
                max_text: 280,
                max_images: 4,
                image_types: &[
                    "image/jpeg",
                    "image/png",
                    "image/webp",
                    "image/bmp",
                    "image/pjpeg",
                    "image/tiff",
                ],
                video_types: &["video/mp4", "video/quicktime", "video/webm", "video/mp2t"],
                gif_types: &["image/gif"],
                supports_polls: true,
                supports_threads: true,
            }),
            // platform-facts §6.2/§6.3: 500 characters (emoji count their UTF-8 bytes); JPEG/PNG
            // images, MOV/MP4 video; a carousel holds 2–20 items; no polls. Reply chains are not
            // built for Threads yet, so a long text is refused rather than split.
            Platform::Threads => Some(ContentRules {
                platform,
                max_text: 500,
                max_images: 20,
                image_types: &["image/jpeg", "image/png"],
                video_types: &["video/mp4", "video/quicktime"],
                gif_types: &[],
                supports_polls: false,
                supports_threads: false,
            }),
            _ => None,
        }
    }

    /// The text length as this platform counts it.
    pub fn text_length(&self, text: &str) -> usize {
        match self.platform {
            Platform::X => x_weighted_length(text),
            Platform::Threads => threads_length(text),
            _ => text.chars().count(),
        }
    }

    /// Checks content against these rules and shapes it for the platform.
    pub fn prepare(&self, content: &Content) -> Result<PreparedContent, ContentError> {
        let platform = self.platform;
        let text = content.text.trim();
        if text.is_empty() && content.media.is_empty() {
            return Err(ContentError::Empty);
        }
        self.check_media(&content.media)?;
        if let Some(poll) = &content.poll {
            if !self.supports_polls {
                return Err(ContentError::PollsNotSupported { platform });
            }
            if !content.media.is_empty() {
                return Err(ContentError::PollWithMedia { platform });
            }
            check_poll(poll)?;
        }
        if content.thread && !self.supports_threads {
            return Err(ContentError::ThreadsNotSupported { platform });
        }
        let length = self.text_length(text);
        let parts = if length <= self.max_text {
            vec![text.to_string()]
        } else if content.thread && self.supports_threads {
            split_into_thread(text, self.max_text, |t| self.text_length(t))
        } else {
            return Err(ContentError::TextTooLong {
                platform,
                limit: self.max_text,
                length,
            });
        };
        if content.thread && text.is_empty() {
            return Err(ContentError::ThreadWithoutText);
        }
        Ok(PreparedContent {
            parts,
            media: content.media.clone(),
            poll: content.poll.clone(),
        })
    }

    fn check_media(&self, media: &[MediaItem]) -> Result<(), ContentError> {
        let platform = self.platform;
        for (index, item) in media.iter().enumerate() {
            let parsed = url::Url::parse(&item.url).ok();
            if !matches!(
                parsed.as_ref().map(url::Url::scheme),
                Some("http" | "https")
            ) {
                return Err(ContentError::InvalidMediaUrl { index });
            }
            let allowed = match item.kind {
                MediaKind::Image => self.image_types,
                MediaKind::Video => self.video_types,
                MediaKind::Gif if self.gif_types.is_empty() => {
                    return Err(ContentError::GifNotSupported { platform, index })
                }
                MediaKind::Gif => self.gif_types,
            };
            if !allowed.contains(&item.mime_type.as_str()) {
                return Err(ContentError::UnsupportedMediaType {
                    platform,
                    index,
                    kind: item.kind,
                    mime_type: item.mime_type.clone(),
                    allowed: allowed.join(", "),
                });
            }
        }
        let has_solo = media
            .iter()
            .any(|m| matches!(m.kind, MediaKind::Video | MediaKind::Gif));
        if has_solo && media.len() > 1 {
            return Err(ContentError::VideoMustBeAlone {
                platform,
                count: media.len(),
            });
        }
        if media.len() > self.max_images {
            return Err(ContentError::TooManyImages {
                platform,
                limit: self.max_images,
                count: media.len(),
            });
        }
        Ok(())
    }
}

fn check_poll(poll: &Poll) -> Result<(), ContentError> {
    if !(2..=4).contains(&poll.options.len()) {
        return Err(ContentError::PollOptionCount {
            count: poll.options.len(),
        });
    }
    for (index, option) in poll.options.iter().enumerate() {
        let length = option.trim().chars().count();
        if !(1..=25).contains(&length) {
            return Err(ContentError::PollOptionLength { index, length });
        }
    }
    if !(5..=10080).contains(&poll.duration_minutes) {
        return Err(ContentError::PollDuration {
            minutes: poll.duration_minutes,
        });
    }
    Ok(())
}

/// Threads' length: one per code point, except that an emoji counts its UTF-8 bytes
/// (platform-facts §6.3: "Emojis are counted as the number of UTF-8 bytes").
pub fn threads_length(text: &str) -> usize {
    text.chars()
        .map(|c| if is_emoji(c) { c.len_utf8() } else { 1 })
        .sum()
}

/// Code points in the main emoji blocks (pictographs, symbols, dingbats, flags, variation
/// selectors and the zero-width joiner that glue emoji sequences together).
fn is_emoji(c: char) -> bool {
    matches!(c as u32,
        0x1F000..=0x1FAFF | 0x2600..=0x27BF | 0x2B00..=0x2BFF | 0xFE00..=0xFE0F | 0x200D)
}

/// X's weighted length (twitter-text v3 defaults): code points in the Latin and general
/// punctuation ranges weigh 1, everything else 2, and every URL weighs 23.
pub fn x_weighted_length(text: &str) -> usize {
    text.split_inclusive(char::is_whitespace)
        .map(|token| {
            let word = token.trim_end();
            let trailing = token.len() - word.len();
            let trailing_weight = token[word.len()..]
                .chars()
                .map(x_char_weight)
                .sum::<usize>();
            debug_assert!(trailing <= token.len());
            if is_url(word) {
                X_URL_WEIGHT + trailing_weight
            } else {
                token.chars().map(x_char_weight).sum()
            }
        })
        .sum()
}

fn is_url(word: &str) -> bool {
    word.starts_with("http://") || word.starts_with("https://")
}

fn x_char_weight(c: char) -> usize {
    let cp = c as u32;
    let light = (0..=4351).contains(&cp)
        || (8192..=8205).contains(&cp)
        || (8208..=8223).contains(&cp)
        || (8242..=8247).contains(&cp);
    if light {
        1
    } else {
        2
    }
}

/// Splits text into parts of at most `limit` (by `length`), at word boundaries; a single word
/// longer than the limit is cut between characters.
fn split_into_thread(text: &str, limit: usize, length: impl Fn(&str) -> usize) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        let candidate = if current.is_empty() {
            word.to_string()
        } else {
            format!("{current} {word}")
        };
        if length(&candidate) <= limit {
            current = candidate;
            continue;
        }
        if !current.is_empty() {
            parts.push(std::mem::take(&mut current));
        }
        if length(word) <= limit {
            current = word.to_string();
        } else {
            for c in word.chars() {
                let mut next = current.clone();
                next.push(c);
                if length(&next) > limit {
                    parts.push(std::mem::take(&mut current));
                    current.push(c);
                } else {
                    current = next;
                }
            }
        }
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x() -> ContentRules {
        ContentRules::for_platform(Platform::X).unwrap()
    }

    fn image(n: usize) -> MediaItem {
        MediaItem {
            url: format!("https://cdn.example.com/{n}.png"),
            kind: MediaKind::Image,
            mime_type: "image/png".into(),
        }
    }

    fn text(t: &str) -> Content {
        Content {
            text: t.into(),
            ..Content::default()
        }
    }

    #[test]
    fn urls_count_23_and_cjk_counts_double() {
        assert_eq!(x_weighted_length("hello"), 5);
        assert_eq!(
            x_weighted_length("see https://example.com/a/very/long/path/indeed/yes"),
            4 + 23
        );
        assert_eq!(x_weighted_length("日本"), 4);
        assert_eq!(x_weighted_length("a https://x.co b"), 1 + 1 + 23 + 1 + 1);
    }

    #[test]
    fn text_at_the_limit_passes_and_one_over_is_refused_with_the_numbers() {
        assert!(x().prepare(&text(&"a".repeat(280))).is_ok());
        assert_eq!(
            x().prepare(&text(&"a".repeat(281))),
            Err(ContentError::TextTooLong {
                platform: Platform::X,
                limit: 280,
                length: 281
            })
        );
    }

    #[test]
    fn a_long_text_as_thread_splits_at_words_and_every_part_fits() {
        let long = "word ".repeat(200);
        let mut content = text(&long);
        content.thread = true;
        let prepared = x().prepare(&content).unwrap();
        assert!(prepared.parts.len() >= 4);
        for part in &prepared.parts {
            assert!(x_weighted_length(part) <= 280, "{part}");
            assert!(!part.starts_with(' ') && !part.ends_with(' '));
        }
        assert_eq!(prepared.parts.join(" "), long.trim());
    }

    #[test]
    fn a_word_longer_than_the_limit_is_cut() {
        let mut content = text(&"x".repeat(600));
        content.thread = true;
        let parts = x().prepare(&content).unwrap().parts;
        assert_eq!(
            parts.iter().map(String::len).collect::<Vec<_>>(),
            vec![280, 280, 40]
        );
    }

    #[test]
    fn media_rules() {
        let mut four = text("pics");
        four.media = (0..4).map(image).collect();
        assert!(x().prepare(&four).is_ok());
        let mut five = four.clone();
        five.media.push(image(5));
        assert_eq!(
            x().prepare(&five),
            Err(ContentError::TooManyImages {
                platform: Platform::X,
                limit: 4,
                count: 5
            })
        );
        let mut mixed = four.clone();
        mixed.media[0].kind = MediaKind::Video;
        mixed.media[0].mime_type = "video/mp4".into();
        assert_eq!(
            x().prepare(&mixed),
            Err(ContentError::VideoMustBeAlone {
                platform: Platform::X,
                count: 4
            })
        );
        let mut bad_type = text("t");
        bad_type.media = vec![MediaItem {
            mime_type: "application/pdf".into(),
            ..image(1)
        }];
        assert!(matches!(
            x().prepare(&bad_type),
            Err(ContentError::UnsupportedMediaType { index: 0, .. })
        ));
        let mut bad_url = text("t");
        bad_url.media = vec![MediaItem {
            url: "file:///etc/passwd".into(),
            ..image(1)
        }];
        assert_eq!(
            x().prepare(&bad_url),
            Err(ContentError::InvalidMediaUrl { index: 0 })
        );
    }

    #[test]
    fn poll_rules() {
        let poll = |options: &[&str], minutes| Content {
            text: "vote".into(),
            poll: Some(Poll {
                options: options.iter().map(|s| s.to_string()).collect(),
                duration_minutes: minutes,
            }),
            ..Content::default()
        };
        assert!(x().prepare(&poll(&["a", "b"], 60)).is_ok());
        assert_eq!(
            x().prepare(&poll(&["only"], 60)),
            Err(ContentError::PollOptionCount { count: 1 })
        );
        assert_eq!(
            x().prepare(&poll(&["a", &"b".repeat(26)], 60)),
            Err(ContentError::PollOptionLength {
                index: 1,
                length: 26
            })
        );
        assert_eq!(
            x().prepare(&poll(&["a", "b"], 4)),
            Err(ContentError::PollDuration { minutes: 4 })
        );
        let mut with_media = poll(&["a", "b"], 60);
        with_media.media = vec![image(1)];
        assert_eq!(
            x().prepare(&with_media),
            Err(ContentError::PollWithMedia {
                platform: Platform::X
            })
        );
    }

    fn threads() -> ContentRules {
        ContentRules::for_platform(Platform::Threads).unwrap()
    }

    #[test]
    fn threads_counts_code_points_and_emoji_bytes() {
        assert_eq!(threads_length("héllo"), 5);
        assert_eq!(threads_length("日本"), 2);
        assert_eq!(threads_length("hi 😀"), 3 + 4);
        assert!(threads().prepare(&text(&"é".repeat(500))).is_ok());
        assert_eq!(
            threads().prepare(&text(&"a".repeat(501))),
            Err(ContentError::TextTooLong {
                platform: Platform::Threads,
                limit: 500,
                length: 501
            })
        );
        assert_eq!(
            threads().prepare(&text(&format!("{}😀", "a".repeat(497)))),
            Err(ContentError::TextTooLong {
                platform: Platform::Threads,
                limit: 500,
                length: 501
            })
        );
        let refused = threads().prepare(&text(&"a".repeat(501))).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "threads allows 500 characters (each emoji counts its UTF-8 bytes, usually 4); this text counts 501. Shorten it"
        );
        assert!(ContentError::TextTooLong {
            platform: Platform::X,
            limit: 280,
            length: 281
        }
        .to_string()
        .contains("\"thread\": true"));
        let mut long = text(&"word ".repeat(200));
        long.thread = true;
        assert_eq!(
            threads().prepare(&long),
            Err(ContentError::ThreadsNotSupported {
                platform: Platform::Threads
            })
        );
    }

    #[test]
    fn threads_media_rules() {
        let mut carousel = text("pics");
        carousel.media = (0..20).map(image).collect();
        assert!(threads().prepare(&carousel).is_ok());
        carousel.media.push(image(21));
        assert_eq!(
            threads().prepare(&carousel),
            Err(ContentError::TooManyImages {
                platform: Platform::Threads,
                limit: 20,
                count: 21
            })
        );
        let mut webp = text("t");
        webp.media = vec![MediaItem {
            mime_type: "image/webp".into(),
            ..image(1)
        }];
        assert!(matches!(
            threads().prepare(&webp),
            Err(ContentError::UnsupportedMediaType { index: 0, .. })
        ));
        let mut gif = text("t");
        gif.media = vec![MediaItem {
            kind: MediaKind::Gif,
            mime_type: "image/gif".into(),
            ..image(1)
        }];
        assert_eq!(
            threads().prepare(&gif),
            Err(ContentError::GifNotSupported {
                platform: Platform::Threads,
                index: 0
            })
        );
        let poll = Content {
            text: "vote".into(),
            poll: Some(Poll {
                options: vec!["a".into(), "b".into()],
                duration_minutes: 60,
            }),
            ..Content::default()
        };
        assert_eq!(
            threads().prepare(&poll),
            Err(ContentError::PollsNotSupported {
                platform: Platform::Threads
            })
        );
    }

    #[test]
    fn empty_posts_are_refused() {
        assert_eq!(x().prepare(&text("   ")), Err(ContentError::Empty));
    }
}
