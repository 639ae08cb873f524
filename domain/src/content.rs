//! What a user asks to publish, and the per-platform rules it must pass before a job is accepted.
//! A job stores `PreparedContent`: content already checked and shaped for its platform (a long
//! X text already split into thread parts), so nothing downstream re-decides.
use serde::{Deserialize, Serialize};

use crate::options::{OptionsError, PublishOptions};
use crate::Platform;

/// Kind of a media item; decides the platform's upload category and limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Image,
    Gif,
    Video,
    /// A PDF or office document, shown as a swipeable carousel (LinkedIn).
    Document,
}

/// A media file referenced by URL; Herald streams it to the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaItem {
    pub url: String,
    pub kind: MediaKind,
    /// MIME type, e.g. `image/png`, `video/mp4`.
    pub mime_type: String,
    /// What Herald read from the file itself (set by Herald when the job is accepted, never
    /// taken from the request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<VideoProbe>,
}

/// A video's metadata, read from its MP4/MOV header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoProbe {
    pub duration_ms: u64,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
}

/// Limits on a video's duration, size and frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoLimits {
    pub min_secs: f64,
    pub max_secs: f64,
    pub max_bytes: u64,
    /// Neither side may exceed this many pixels.
    pub max_side: u32,
    /// The frame must be at least this wide and this high (0: no minimum).
    pub min_width: u32,
    pub min_height: u32,
    /// Width divided by height must lie in this range.
    pub aspect: (f64, f64),
}

impl VideoLimits {
    /// No limit at all; the base for a platform the table gives no video limits.
    pub const fn unbounded() -> Self {
        Self::new(0.0, f64::INFINITY, u64::MAX)
    }

    const fn new(min_secs: f64, max_secs: f64, max_bytes: u64) -> Self {
        Self {
            min_secs,
            max_secs,
            max_bytes,
            max_side: u32::MAX,
            min_width: 0,
            min_height: 0,
            aspect: (0.0, f64::INFINITY),
        }
    }
}

const MB: u64 = 1024 * 1024;

/// A poll attached to a post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Poll {
    pub options: Vec<String>,
    pub duration_minutes: u32,
    /// The question, where the platform shows one apart from the text (LinkedIn); without
    /// it, the post's text is the question.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
}

/// How long a platform's polls may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollDurations {
    /// Any number of minutes in this range.
    Range(u32, u32),
    /// One of these numbers of minutes.
    OneOf(Vec<u32>),
}

/// A platform's poll limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollRules {
    pub max_option_chars: usize,
    pub durations: PollDurations,
    /// The longest question, where the platform has one apart from the text.
    pub max_question: Option<usize>,
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
    /// A title, where the platform has one (YouTube, Reddit, TikTok photos, link shares);
    /// derived from the text where the platform needs one and none is given.
    #[serde(default)]
    pub title: Option<String>,
    /// A link to share: a link attachment where the platform has them (Facebook, LinkedIn,
    /// Reddit), otherwise appended to the text.
    #[serde(default)]
    pub link: Option<String>,
    /// Hashtags (without `#`), placed the way each platform expects.
    #[serde(default)]
    pub hashtags: Vec<String>,
    /// Cut a text over the platform's limit at a word boundary (ending in `…`) instead of
    /// refusing it. Never done unless asked.
    #[serde(default)]
    pub trim_to_fit: bool,
    /// Per-platform options; each job uses its own platform's part. Boxed: most posts have
    /// none, and commands and events stay small.
    #[serde(default)]
    pub options: Box<PublishOptions>,
}

/// What one target publishes differently from the request's shared content: each field given
/// replaces the shared one (`null` removes a title, link or poll; `[]` removes media). Options
/// need no override: they are already per platform.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentOverride {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub media: Option<Vec<MediaItem>>,
    #[serde(default, deserialize_with = "present")]
    pub poll: Option<Option<Poll>>,
    #[serde(default)]
    pub thread: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub title: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub link: Option<Option<String>>,
    #[serde(default)]
    pub hashtags: Option<Vec<String>>,
    #[serde(default)]
    pub trim_to_fit: Option<bool>,
}

/// A field that is present, even as `null` (absent fields take the `default`, `None`).
fn present<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl Content {
    /// This content with `changes` applied.
    pub fn overridden(&self, changes: &ContentOverride) -> Content {
        let mut content = self.clone();
        let ContentOverride {
            text,
            media,
            poll,
            thread,
            title,
            link,
            hashtags,
            trim_to_fit,
        } = changes.clone();
        if let Some(text) = text {
            content.text = text;
        }
        if let Some(media) = media {
            content.media = media;
        }
        if let Some(poll) = poll {
            content.poll = poll;
        }
        if let Some(thread) = thread {
            content.thread = thread;
        }
        if let Some(title) = title {
            content.title = title;
        }
        if let Some(link) = link {
            content.link = link;
        }
        if let Some(hashtags) = hashtags {
            content.hashtags = hashtags;
        }
        if let Some(trim_to_fit) = trim_to_fit {
            content.trim_to_fit = trim_to_fit;
        }
        content
    }
}

/// Content accepted for one platform: `parts` has one entry per post (more than one only for a
/// thread); media and poll go on the first part.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PreparedContent {
    pub parts: Vec<String>,
    pub media: Vec<MediaItem>,
    pub poll: Option<Poll>,
    /// The title the platform shows (given, or derived from the text where it needs one).
    #[serde(default)]
    pub title: Option<String>,
    /// A link attachment, on platforms that have them.
    #[serde(default)]
    pub link: Option<String>,
    #[serde(default)]
    pub options: Box<PublishOptions>,
}

/// Why content cannot go to a platform. Each names the rule and its limit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
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
    #[error("media item {index}: {platform} does not take documents; share it as a link instead")]
    DocumentsNotSupported { platform: Platform, index: usize },
    #[error("a document is posted on its own on {platform}, without other media; got {count} media items")]
    DocumentMustBeAlone { platform: Platform, count: usize },
    #[error("a poll needs 2 to 4 options; got {count}")]
    PollOptionCount { count: usize },
    #[error("poll option {index} must be 1 to {limit} characters on {platform}; it has {length}")]
    PollOptionLength {
        platform: Platform,
        index: usize,
        limit: usize,
        length: usize,
    },
    #[error("a poll on {platform} lasts {allowed} minutes; got {minutes}")]
    PollDuration {
        platform: Platform,
        allowed: String,
        minutes: u32,
    },
    #[error("a poll on {platform} asks a question of 1 to {limit} characters: give poll.question (the text is the question when none is given); it has {length}")]
    PollQuestionLength {
        platform: Platform,
        limit: usize,
        length: usize,
    },
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
    #[error(transparent)]
    InvalidOptions(#[from] OptionsError),
    #[error("{platform} needs media: {what}")]
    MediaRequired {
        platform: Platform,
        what: &'static str,
    },
    #[error("{platform} allows at most {limit} media items per post; got {count}")]
    TooManyMedia {
        platform: Platform,
        limit: usize,
        count: usize,
    },
    #[error("{platform} titles are at most {limit} characters; this one has {length}")]
    TitleTooLong {
        platform: Platform,
        limit: usize,
        length: usize,
    },
    #[error("{platform} needs a title: give \"title\" or some text to derive it from")]
    TitleRequired { platform: Platform },
    #[error("{platform} allows at most {limit} hashtags; got {count}")]
    TooManyHashtags {
        platform: Platform,
        limit: usize,
        count: usize,
    },
    #[error("link must be an absolute http(s) URL")]
    InvalidLink,
    #[error("hashtag {index} must be letters, digits or _ (without #)")]
    InvalidHashtag { index: usize },
    #[error("media item {index}: {platform} {what} videos of {min_secs}-{max_secs} seconds; this one lasts {secs:.1} s")]
    VideoDuration {
        platform: Platform,
        index: usize,
        what: &'static str,
        min_secs: f64,
        max_secs: f64,
        secs: f64,
    },
    #[error(
        "media item {index}: {platform} takes videos up to {limit_mb} MB; this one has {mb} MB"
    )]
    VideoTooLarge {
        platform: Platform,
        index: usize,
        limit_mb: u64,
        mb: u64,
    },
    #[error("media item {index}: {platform} takes videos up to {limit} pixels a side; this one is {width}x{height}")]
    VideoResolution {
        platform: Platform,
        index: usize,
        limit: u32,
        width: u32,
        height: u32,
    },
    #[error("media item {index}: {platform} {what} at least {min_width}x{min_height} pixels; this video is {width}x{height}")]
    VideoTooSmall {
        platform: Platform,
        index: usize,
        what: &'static str,
        min_width: u32,
        min_height: u32,
        width: u32,
        height: u32,
    },
    #[error("{platform} reels (options.facebook_pages.placement = \"reels\") are exactly one video and nothing else; got {videos} videos and {other} other media items")]
    ReelNeedsOneVideo {
        platform: Platform,
        videos: usize,
        other: usize,
    },
    #[error("media item {index}: {platform} {what} needs a width/height ratio of {min:.2}-{max:.2}; this video is {width}x{height}")]
    VideoAspect {
        platform: Platform,
        index: usize,
        what: &'static str,
        min: f64,
        max: f64,
        width: u32,
        height: u32,
    },
}

/// How the platform counts text, for `TextTooLong`.
fn counting_rule(platform: &Platform) -> &'static str {
    match platform {
        Platform::X => " (weighted: URLs count 23, most CJK characters and emoji count 2)",
        Platform::Threads => " (each emoji counts its UTF-8 bytes, usually 4)",
        _ => "",
    }
}

/// What to do about a text that is too long: where the platform takes reply chains, posting
/// it as one.
fn length_advice(platform: &Platform) -> &'static str {
    if ContentRules::for_platform(*platform).supports_threads {
        "Shorten it, or set \"thread\": true to post it as a reply chain"
    } else {
        "Shorten it"
    }
}

/// How a platform counts text length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextCounting {
    /// Unicode code points.
    Characters,
    /// X's weighted counting (URLs 23, most CJK and emoji 2).
    XWeighted,
    /// Threads: code points, but an emoji counts its UTF-8 bytes.
    ThreadsEmojiBytes,
    /// UTF-8 bytes (YouTube descriptions).
    Utf8Bytes,
    /// UTF-16 code units (TikTok's "UTF-16 runes").
    Utf16Units,
}

/// Where a platform wants hashtags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashtagPlacement {
    /// On a line of their own after the text, counted in its length.
    EndOfText,
    /// The platform has no hashtags (Reddit): they are left out.
    Dropped,
}

/// The content limits of one platform (defaults from platform-facts.md). Plain data: a
/// deployment adjusts it with a `RulesOverride` (see `rules_table`).
#[derive(Debug, Clone, PartialEq)]
pub struct ContentRules {
    pub platform: Platform,
    pub max_text: usize,
    pub counting: TextCounting,
    /// Media items per post (images, or the children of a carousel).
    pub max_media: usize,
    /// Images and videos may share one post (a carousel); otherwise a video or GIF goes alone.
    pub mixed_media: bool,
    /// The post needs at least one media item (Instagram, YouTube, TikTok).
    pub media_required: Option<&'static str>,
    pub image_types: Vec<String>,
    pub video_types: Vec<String>,
    pub gif_types: Vec<String>,
    /// Document types (empty where the platform takes no documents).
    pub document_types: Vec<String>,
    /// Poll limits, where the platform has polls.
    pub polls: Option<PollRules>,
    pub supports_threads: bool,
    /// The platform shows a title of at most this many characters.
    pub max_title: Option<usize>,
    /// A title is required: derived from the text when none is given.
    pub title_required: bool,
    /// The platform takes a link attachment; elsewhere a link is appended to the text.
    pub link_attachment: bool,
    pub max_hashtags: Option<usize>,
    pub hashtags: HashtagPlacement,
    /// Video limits, checked when Herald could read the video's header.
    pub video: Option<VideoLimits>,
    /// Limits of a reel's video, where the platform publishes reels as a placement of its own
    /// (Facebook Pages with `options.facebook_pages.placement = "reels"`).
    pub reel_video: Option<VideoLimits>,
}

/// Weight of a URL in X's counting, whatever its length.
const X_URL_WEIGHT: usize = 23;
const JPEG_PNG: &[&str] = &["image/jpeg", "image/png"];
const MP4_MOV: &[&str] = &["video/mp4", "video/quicktime"];

/// A list of MIME types for the table.
fn types(list: &[&str]) -> Vec<String> {
    list.iter().map(|t| (*t).to_string()).collect()
}

impl ContentRules {
    /// A table entry with the common defaults; each platform overrides what differs.
    fn base(platform: Platform, max_text: usize) -> ContentRules {
        ContentRules {
            platform,
            max_text,
            counting: TextCounting::Characters,
            max_media: 1,
            mixed_media: false,
            media_required: None,
            image_types: types(JPEG_PNG),
            video_types: types(MP4_MOV),
            gif_types: Vec::new(),
            document_types: Vec::new(),
            polls: None,
            supports_threads: false,
            max_title: None,
            title_required: false,
            link_attachment: false,
            max_hashtags: None,
            hashtags: HashtagPlacement::EndOfText,
            video: None,
            reel_video: None,
        }
    }

    /// The rules for a platform.
    pub fn for_platform(platform: Platform) -> ContentRules {
        let base = Self::base(platform, 0);
        match platform {
            // platform-facts §1.3/§1.4: 280 weighted characters; up to 4 photos, 1 GIF or 1 video.
            Platform::X => ContentRules {
                max_text: 280,
                counting: TextCounting::XWeighted,
                max_media: 4,
                image_types: types(&[
                    "image/jpeg",
                    "image/png",
                    "image/webp",
                    "image/bmp",
                    "image/pjpeg",
                    "image/tiff",
                ]),
                video_types: types(&["video/mp4", "video/quicktime", "video/webm", "video/mp2t"]),
                gif_types: types(&["image/gif"]),
                // §1.3: 2-4 options of up to 25 characters, 5 minutes to 7 days.
                polls: Some(PollRules {
                    max_option_chars: 25,
                    durations: PollDurations::Range(5, 10_080),
                    max_question: None,
                }),
                supports_threads: true,
                // §1.4: 0.5-140 s, up to 512 MB.
                video: Some(VideoLimits::new(0.5, 140.0, 512 * MB)),
                ..base
            },
            // §6.2/§6.3: 500 characters (emoji count their UTF-8 bytes); JPEG/PNG images,
            // MOV/MP4 video; a carousel holds 2–20 items. A longer text with `thread` is
            // posted as a reply chain (each part a reply to the previous one).
            Platform::Threads => ContentRules {
                max_text: 500,
                counting: TextCounting::ThreadsEmojiBytes,
                max_media: 20,
                supports_threads: true,
                ..base
            },
            // §7.1/§7.3: one video per upload; description ≤ 5000 bytes; title ≤ 100.
            Platform::Youtube => ContentRules {
                max_text: 5000,
                counting: TextCounting::Utf8Bytes,
                media_required: Some("one video"),
                image_types: Vec::new(),
                video_types: types(&[
                    "video/mp4",
                    "video/quicktime",
                    "video/webm",
                    "video/x-msvideo",
                    "video/mpeg",
                    "application/octet-stream",
                ]),
                max_title: Some(100),
                title_required: true,
                ..base
            },
            // §2.2/§2.3/§2.4: a video (caption ≤ 2200 UTF-16 units) or up to 35 photos
            // (WebP/JPEG, pulled from URLs); photo titles ≤ 90.
            Platform::Tiktok => ContentRules {
                max_text: 2200,
                counting: TextCounting::Utf16Units,
                max_media: 35,
                media_required: Some("a video or 1-35 photos"),
                image_types: types(&["image/jpeg", "image/webp"]),
                video_types: types(&["video/mp4", "video/quicktime", "video/webm"]),
                max_title: Some(90),
                // §2.4: at most 10 minutes through the API, 4 GB, 360-4096 px a side.
                video: Some(VideoLimits {
                    max_side: 4096,
                    ..VideoLimits::new(1.0, 600.0, 4096 * MB)
                }),
                ..base
            },
            // §4.2/§4.3: caption ≤ 2200 with ≤ 30 hashtags; JPEG images; MP4/MOV video;
            // carousels of up to 10 mixed items.
            Platform::Instagram => ContentRules {
                max_text: 2200,
                max_media: 10,
                mixed_media: true,
                media_required: Some("an image, a video or a carousel"),
                image_types: types(&["image/jpeg"]),
                max_hashtags: Some(30),
                // §4.3: reels 3 s-15 min, up to 300 MB, ≤ 1920 px wide (stories are
                // narrowed in `check_video`).
                video: Some(VideoLimits {
                    max_side: 1920,
                    ..VideoLimits::new(3.0, 900.0, 300 * MB)
                }),
                ..base
            },
            // §5: text, link, photos (multi-photo via attached_media) or one video; a video
            // takes a `title` (255 characters per third-party notes; other posts show none).
            Platform::FacebookPages => ContentRules {
                max_text: 63_206,
                max_media: 10,
                image_types: types(&["image/jpeg", "image/png", "image/gif", "image/bmp"]),
                max_title: Some(255),
                link_attachment: true,
                // Reels Publishing API, "Video Specifications": 9:16, at least 540x960, 3 to
                // 90 seconds (developers.facebook.com/docs/video-api/guides/reels-publishing).
                // No size limit is given. The ratio allows 1% for encoders that round a side.
                reel_video: Some(VideoLimits {
                    min_width: 540,
                    min_height: 960,
                    aspect: (0.556, 0.569),
                    ..VideoLimits::new(3.0, 90.0, u64::MAX)
                }),
                ..base
            },
            // §8.2/§8.3: commentary ≤ 3000; one image, a multi-image post, one video or one
            // document; article shares carry a link and title. Documents: "PPT, PPTX, DOC,
            // DOCX, and PDF" (Documents API,
            // learn.microsoft.com/linkedin/marketing/community-management/shares/documents-api).
            Platform::Linkedin => ContentRules {
                max_text: 3000,
                max_media: 20,
                // Poll API (learn.microsoft.com/linkedin/marketing/community-management/shares/
                // poll-post-api): 2-4 options, ONE_DAY, THREE_DAYS, SEVEN_DAYS or FOURTEEN_DAYS;
                // a question of up to 140 and options of up to 30 characters (third-party
                // notes; UNCONFIRMED in LinkedIn's own text).
                polls: Some(PollRules {
                    max_option_chars: 30,
                    durations: PollDurations::OneOf(vec![1_440, 4_320, 10_080, 20_160]),
                    max_question: Some(140),
                }),
                image_types: types(&["image/jpeg", "image/png", "image/gif"]),
                document_types: types(&[
                    "application/pdf",
                    "application/vnd.ms-powerpoint",
                    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
                    "application/msword",
                    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                ]),
                max_title: Some(400),
                link_attachment: true,
                ..base
            },
            // §9.2: self, link, image, gallery or video posts to a subreddit; title ≤ 300
            // (required). A gallery holds 2-20 images (r/modnews, "Image Gallery support is
            // coming soon", 2020: "we will only allow 20 images per Image Gallery"); one image
            // is an image post. A video (MP4 or MOV, up to 15 minutes: Reddit's video launch,
            // 2017) goes alone; 1 GB is Reddit's published video size limit for ads, taken for
            // posts too (the upload lease itself allows 2 GiB).
            Platform::Reddit => ContentRules {
                max_text: 40_000,
                max_media: 20,
                image_types: types(&["image/jpeg", "image/png", "image/gif"]),
                video: Some(VideoLimits::new(0.0, 900.0, 1024 * MB)),
                max_title: Some(300),
                title_required: true,
                link_attachment: true,
                hashtags: HashtagPlacement::Dropped,
                ..base
            },
        }
    }

    /// The text length as this platform counts it.
    pub fn text_length(&self, text: &str) -> usize {
        match self.counting {
            TextCounting::Characters => text.chars().count(),
            TextCounting::XWeighted => x_weighted_length(text),
            TextCounting::ThreadsEmojiBytes => threads_length(text),
            TextCounting::Utf8Bytes => text.len(),
            TextCounting::Utf16Units => text.encode_utf16().count(),
        }
    }

    /// Checks content against these rules and shapes it for the platform.
    pub fn prepare(&self, content: &Content) -> Result<PreparedContent, ContentError> {
        let platform = self.platform;
        content.options.check_for(platform)?;
        let link = content
            .link
            .as_deref()
            .map(str::trim)
            .filter(|l| !l.is_empty());
        if let Some(link) = link {
            let parsed = url::Url::parse(link).ok();
            if !matches!(
                parsed.as_ref().map(url::Url::scheme),
                Some("http" | "https")
            ) {
                return Err(ContentError::InvalidLink);
            }
        }
        // A reel has no link attachment: its link goes into the description.
        let reel =
            self.platform == Platform::FacebookPages && content.options.facebook_pages.is_reel();
        let attach_link = self.link_attachment && !reel;
        let text = self.compose_text(content.text.trim(), link, attach_link, &content.hashtags)?;
        if text.is_empty() && content.media.is_empty() && link.is_none() {
            return Err(ContentError::Empty);
        }
        self.check_media(&content.media)?;
        if reel {
            check_reel(platform, &content.media)?;
        }
        self.check_videos(&content.media, &content.options)?;
        check_media_options(platform, &content.media, &content.options)?;
        if let Some(poll) = &content.poll {
            let Some(rules) = &self.polls else {
                return Err(ContentError::PollsNotSupported { platform });
            };
            if !content.media.is_empty() {
                return Err(ContentError::PollWithMedia { platform });
            }
            check_poll(platform, rules, poll, content.text.trim())?;
        }
        if content.thread && !self.supports_threads {
            return Err(ContentError::ThreadsNotSupported { platform });
        }
        let length = self.text_length(&text);
        let parts = if length <= self.max_text {
            vec![text.clone()]
        } else if content.thread && self.supports_threads {
            split_into_thread(&text, self.max_text, |t| self.text_length(t))
        } else if content.trim_to_fit {
            vec![trim_at_word(&text, self.max_text, |t| self.text_length(t))]
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
            title: self.title(content)?,
            parts,
            media: content.media.clone(),
            poll: content.poll.clone(),
            link: link.filter(|_| attach_link).map(str::to_string),
            options: content.options.clone(),
        })
    }

    /// The text with the link (where the platform has no link attachment) and the hashtags
    /// placed as the platform expects.
    fn compose_text(
        &self,
        text: &str,
        link: Option<&str>,
        attach_link: bool,
        hashtags: &[String],
    ) -> Result<String, ContentError> {
        let mut composed = text.to_string();
        let mut append = |piece: &str, separator: &str| {
            if !composed.is_empty() {
                composed.push_str(separator);
            }
            composed.push_str(piece);
        };
        if let (Some(link), false) = (link, attach_link) {
            append(link, " ");
        }
        let mut tags = Vec::with_capacity(hashtags.len());
        for (index, tag) in hashtags.iter().enumerate() {
            let tag = tag.trim().trim_start_matches('#');
            if tag.is_empty() || !tag.chars().all(|c| c.is_alphanumeric() || c == '_') {
                return Err(ContentError::InvalidHashtag { index });
            }
            tags.push(format!("#{tag}"));
        }
        if self.hashtags == HashtagPlacement::EndOfText && !tags.is_empty() {
            append(&tags.join(" "), "\n\n");
        }
        if let Some(limit) = self.max_hashtags {
            let count = composed
                .split_whitespace()
                .filter(|w| w.starts_with('#') && w.len() > 1)
                .count();
            if count > limit {
                return Err(ContentError::TooManyHashtags {
                    platform: self.platform,
                    limit,
                    count,
                });
            }
        }
        Ok(composed)
    }

    /// The title: the one given (checked against the limit), or one derived from the text's
    /// first line where the platform requires a title.
    fn title(&self, content: &Content) -> Result<Option<String>, ContentError> {
        let platform = self.platform;
        let Some(limit) = self.max_title else {
            return Ok(None);
        };
        let given = content
            .title
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        if let Some(title) = given {
            let length = title.chars().count();
            if length > limit {
                return Err(ContentError::TitleTooLong {
                    platform,
                    limit,
                    length,
                });
            }
            return Ok(Some(title.to_string()));
        }
        if !self.title_required {
            return Ok(None);
        }
        let first_line = content.text.trim().lines().next().unwrap_or("").trim();
        if first_line.is_empty() {
            return Err(ContentError::TitleRequired { platform });
        }
        Ok(Some(trim_at_word(first_line, limit, |t| t.chars().count())))
    }

    /// The video limits that apply with these options, and how to name them in a message.
    fn video_limits(&self, options: &PublishOptions) -> Option<(VideoLimits, &'static str)> {
        match self.platform {
            // §4.3: story videos last 3-60 s and weigh at most 100 MB.
            Platform::Instagram if options.instagram.placement.as_deref() == Some("stories") => {
                Some((VideoLimits::new(3.0, 60.0, 100 * MB), "stories take"))
            }
            // A Short is vertical (or square) and at most 3 minutes.
            Platform::Youtube if options.youtube.shorts => Some((
                VideoLimits {
                    aspect: (0.0, 1.0),
                    ..VideoLimits::new(0.0, 180.0, u64::MAX)
                },
                "Shorts take",
            )),
            Platform::FacebookPages if options.facebook_pages.is_reel() => {
                self.reel_video.map(|limits| (limits, "reels take"))
            }
            _ => self.video.map(|limits| (limits, "takes")),
        }
    }

    /// Checks each probed video against the platform's limits.
    fn check_videos(
        &self,
        media: &[MediaItem],
        options: &PublishOptions,
    ) -> Result<(), ContentError> {
        let platform = self.platform;
        let Some((limits, what)) = self.video_limits(options) else {
            return Ok(());
        };
        for (index, item) in media.iter().enumerate() {
            let Some(probe) = item.probe.filter(|_| item.kind == MediaKind::Video) else {
                continue;
            };
            let secs = probe.duration_ms as f64 / 1000.0;
            if secs < limits.min_secs || secs > limits.max_secs {
                return Err(ContentError::VideoDuration {
                    platform,
                    index,
                    what,
                    min_secs: limits.min_secs,
                    max_secs: limits.max_secs,
                    secs,
                });
            }
            if probe.bytes > limits.max_bytes {
                return Err(ContentError::VideoTooLarge {
                    platform,
                    index,
                    limit_mb: limits.max_bytes / MB,
                    mb: probe.bytes.div_ceil(MB),
                });
            }
            if probe.width.max(probe.height) > limits.max_side {
                return Err(ContentError::VideoResolution {
                    platform,
                    index,
                    limit: limits.max_side,
                    width: probe.width,
                    height: probe.height,
                });
            }
            if probe.width < limits.min_width || probe.height < limits.min_height {
                return Err(ContentError::VideoTooSmall {
                    platform,
                    index,
                    what,
                    min_width: limits.min_width,
                    min_height: limits.min_height,
                    width: probe.width,
                    height: probe.height,
                });
            }
            if probe.height > 0 {
                let ratio = f64::from(probe.width) / f64::from(probe.height);
                if ratio < limits.aspect.0 || ratio > limits.aspect.1 {
                    return Err(ContentError::VideoAspect {
                        platform,
                        index,
                        what,
                        min: limits.aspect.0,
                        max: limits.aspect.1.min(99.0),
                        width: probe.width,
                        height: probe.height,
                    });
                }
            }
        }
        Ok(())
    }

    fn check_media(&self, media: &[MediaItem]) -> Result<(), ContentError> {
        let platform = self.platform;
        if media.is_empty() {
            if let Some(what) = self.media_required {
                return Err(ContentError::MediaRequired { platform, what });
            }
        }
        for (index, item) in media.iter().enumerate() {
            let parsed = url::Url::parse(&item.url).ok();
            if !matches!(
                parsed.as_ref().map(url::Url::scheme),
                Some("http" | "https")
            ) {
                return Err(ContentError::InvalidMediaUrl { index });
            }
            let allowed = match item.kind {
                MediaKind::Image => &self.image_types,
                MediaKind::Video => &self.video_types,
                MediaKind::Gif if self.gif_types.is_empty() => {
                    return Err(ContentError::GifNotSupported { platform, index })
                }
                MediaKind::Gif => &self.gif_types,
                MediaKind::Document if self.document_types.is_empty() => {
                    return Err(ContentError::DocumentsNotSupported { platform, index })
                }
                MediaKind::Document => &self.document_types,
            };
            if !allowed.contains(&item.mime_type) {
                return Err(ContentError::UnsupportedMediaType {
                    platform,
                    index,
                    kind: item.kind,
                    mime_type: item.mime_type.clone(),
                    allowed: if allowed.is_empty() {
                        "none (this platform does not take this kind of media)".into()
                    } else {
                        allowed.join(", ")
                    },
                });
            }
        }
        let has_document = media.iter().any(|m| m.kind == MediaKind::Document);
        if has_document && media.len() > 1 {
            return Err(ContentError::DocumentMustBeAlone {
                platform,
                count: media.len(),
            });
        }
        let has_solo = media
            .iter()
            .any(|m| matches!(m.kind, MediaKind::Video | MediaKind::Gif));
        if has_solo && media.len() > 1 && !self.mixed_media {
            return Err(ContentError::VideoMustBeAlone {
                platform,
                count: media.len(),
            });
        }
        if media.len() > self.max_media {
            let images_only = media.iter().all(|m| m.kind == MediaKind::Image);
            return Err(if images_only {
                ContentError::TooManyImages {
                    platform,
                    limit: self.max_media,
                    count: media.len(),
                }
            } else {
                ContentError::TooManyMedia {
                    platform,
                    limit: self.max_media,
                    count: media.len(),
                }
            });
        }
        Ok(())
    }
}

/// Options some media needs on some platforms: a Reddit video needs a poster image
/// (`video_poster_url`), and Herald does not grab a frame from the video for one.
fn check_media_options(
    platform: Platform,
    media: &[MediaItem],
    options: &PublishOptions,
) -> Result<(), ContentError> {
    let has_video = media.iter().any(|m| m.kind == MediaKind::Video);
    if platform == Platform::Reddit && has_video && options.reddit.thumbnail_url.is_none() {
        return Err(OptionsError::new(
            Platform::Reddit,
            "thumbnail_url",
            "a Reddit video post needs a poster image, shown before the video plays: give the URL of a JPEG, PNG or GIF image (Herald does not take a frame from the video)",
        )
        .into());
    }
    Ok(())
}

/// A reel is exactly one video (Reels Publishing API: one video file per reel).
fn check_reel(platform: Platform, media: &[MediaItem]) -> Result<(), ContentError> {
    let videos = media.iter().filter(|m| m.kind == MediaKind::Video).count();
    let other = media.len() - videos;
    if videos == 1 && other == 0 {
        Ok(())
    } else {
        Err(ContentError::ReelNeedsOneVideo {
            platform,
            videos,
            other,
        })
    }
}

/// Cuts `text` to at most `limit` (by `length`) at a word boundary, ending in `…`.
fn trim_at_word(text: &str, limit: usize, length: impl Fn(&str) -> usize) -> String {
    if length(text) <= limit {
        return text.to_string();
    }
    let mut kept = String::new();
    for word in text.split_whitespace() {
        let candidate = if kept.is_empty() {
            word.to_string()
        } else {
            format!("{kept} {word}")
        };
        if length(&format!("{candidate}…")) > limit {
            break;
        }
        kept = candidate;
    }
    if kept.is_empty() {
        // One word longer than the limit: cut between characters.
        for c in text.chars() {
            let mut next = kept.clone();
            next.push(c);
            if length(&format!("{next}…")) > limit {
                break;
            }
            kept = next;
        }
    }
    kept.push('…');
    kept
}

fn check_poll(
    platform: Platform,
    rules: &PollRules,
    poll: &Poll,
    text: &str,
) -> Result<(), ContentError> {
    if !(2..=4).contains(&poll.options.len()) {
        return Err(ContentError::PollOptionCount {
            count: poll.options.len(),
        });
    }
    for (index, option) in poll.options.iter().enumerate() {
        let length = option.trim().chars().count();
        if !(1..=rules.max_option_chars).contains(&length) {
            return Err(ContentError::PollOptionLength {
                platform,
                index,
                limit: rules.max_option_chars,
                length,
            });
        }
    }
    let minutes = poll.duration_minutes;
    let allowed = match &rules.durations {
        PollDurations::Range(min, max) => {
            (!(min..=max).contains(&&minutes)).then(|| format!("{min} to {max}"))
        }
        PollDurations::OneOf(choices) => (!choices.contains(&minutes)).then(|| {
            let choices: Vec<String> = choices.iter().map(u32::to_string).collect();
            format!("one of {}", choices.join(", "))
        }),
    };
    if let Some(allowed) = allowed {
        return Err(ContentError::PollDuration {
            platform,
            allowed,
            minutes,
        });
    }
    if let Some(limit) = rules.max_question {
        let question = poll.question.as_deref().map_or(text, str::trim);
        let length = question.chars().count();
        if !(1..=limit).contains(&length) {
            return Err(ContentError::PollQuestionLength {
                platform,
                limit,
                length,
            });
        }
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
        ContentRules::for_platform(Platform::X)
    }

    #[test]
    fn given_an_override_when_applied_then_given_fields_replace_and_null_removes() {
        let shared = Content {
            text: "shared".into(),
            media: vec![image(1)],
            poll: Some(Poll {
                options: vec!["a".into(), "b".into()],
                duration_minutes: 60,
                question: None,
            }),
            title: Some("Title".into()),
            link: Some("https://example.com".into()),
            hashtags: vec!["rust".into()],
            ..Content::default()
        };
        let changes: ContentOverride =
            serde_json::from_str(r#"{"text": "own", "media": [], "poll": null}"#).unwrap();
        assert_eq!(
            shared.overridden(&changes),
            Content {
                text: "own".into(),
                media: vec![],
                poll: None,
                ..shared.clone()
            }
        );
        // Absent fields keep the shared value; `null` on a title or link removes it.
        let changes: ContentOverride =
            serde_json::from_str(r#"{"title": null, "trim_to_fit": true}"#).unwrap();
        assert_eq!(
            shared.overridden(&changes),
            Content {
                title: None,
                trim_to_fit: true,
                ..shared.clone()
            }
        );
        assert_eq!(shared.overridden(&ContentOverride::default()), shared);
        assert!(serde_json::from_str::<ContentOverride>(r#"{"options": {}}"#).is_err());
    }

    fn image(n: usize) -> MediaItem {
        MediaItem {
            url: format!("https://cdn.example.com/{n}.png"),
            kind: MediaKind::Image,
            mime_type: "image/png".into(),
            probe: None,
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
    fn given_a_linkedin_poll_when_accepted_then_its_durations_options_and_question_are_linkedins() {
        let linkedin = rules(Platform::Linkedin);
        let poll = |question: Option<&str>, options: &[&str], minutes| Content {
            text: "Which do you ship first?".into(),
            poll: Some(Poll {
                options: options.iter().map(|s| s.to_string()).collect(),
                duration_minutes: minutes,
                question: question.map(str::to_owned),
            }),
            ..Content::default()
        };
        // Three days, options of up to 30 characters; the text is the question.
        let thirty = "o".repeat(30);
        assert!(linkedin
            .prepare(&poll(None, &["docs", &thirty], 4_320))
            .is_ok());
        assert!(matches!(
            linkedin.prepare(&poll(None, &["docs", &"o".repeat(31)], 4_320)),
            Err(ContentError::PollOptionLength { limit: 30, .. })
        ));
        // LinkedIn's durations are one, three, seven or fourteen days, nothing between.
        assert!(linkedin.prepare(&poll(None, &["a", "b"], 20_160)).is_ok());
        let refused = linkedin.prepare(&poll(None, &["a", "b"], 60)).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "a poll on linkedin lasts one of 1440, 4320, 10080, 20160 minutes; got 60"
        );
        // A question apart from the text, of up to 140 characters.
        let long = "q".repeat(141);
        assert!(matches!(
            linkedin.prepare(&poll(Some(&long), &["a", "b"], 1_440)),
            Err(ContentError::PollQuestionLength {
                limit: 140,
                length: 141,
                ..
            })
        ));
        let mut long_text = poll(None, &["a", "b"], 1_440);
        long_text.text = "t".repeat(200);
        assert!(matches!(
            linkedin.prepare(&long_text),
            Err(ContentError::PollQuestionLength { length: 200, .. })
        ));
        long_text.poll.as_mut().unwrap().question = Some("Docs or tests?".into());
        assert!(linkedin.prepare(&long_text).is_ok());
    }

    #[test]
    fn poll_rules() {
        let poll = |options: &[&str], minutes| Content {
            text: "vote".into(),
            poll: Some(Poll {
                options: options.iter().map(|s| s.to_string()).collect(),
                duration_minutes: minutes,
                question: None,
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
                platform: Platform::X,
                index: 1,
                limit: 25,
                length: 26
            })
        );
        assert_eq!(
            x().prepare(&poll(&["a", "b"], 4)),
            Err(ContentError::PollDuration {
                platform: Platform::X,
                allowed: "5 to 10080".into(),
                minutes: 4
            })
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
        ContentRules::for_platform(Platform::Threads)
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
            "threads allows 500 characters (each emoji counts its UTF-8 bytes, usually 4); this text counts 501. Shorten it, or set \"thread\": true to post it as a reply chain"
        );
        assert!(ContentError::TextTooLong {
            platform: Platform::X,
            limit: 280,
            length: 281
        }
        .to_string()
        .contains("\"thread\": true"));
        assert!(!ContentError::TextTooLong {
            platform: Platform::Linkedin,
            limit: 3000,
            length: 3001
        }
        .to_string()
        .contains("thread"));
        let mut chain = text("word");
        chain.thread = true;
        assert_eq!(
            ContentRules::for_platform(Platform::Linkedin).prepare(&chain),
            Err(ContentError::ThreadsNotSupported {
                platform: Platform::Linkedin
            })
        );
    }

    /// 200 words of `word😀`: 1,199 code points but 1,799 by Threads' counting (each emoji
    /// counts its 4 UTF-8 bytes).
    fn long_threads_text() -> String {
        vec!["word😀"; 200].join(" ")
    }

    #[test]
    fn given_a_long_threads_text_with_thread_when_prepared_then_it_splits_by_threads_counting() {
        let long = long_threads_text();
        let mut content = text(&long);
        content.thread = true;
        let parts = threads().prepare(&content).unwrap().parts;
        // 55 words (494) fit a part by Threads' counting; by code points 83 would (3 parts).
        assert_eq!(parts.len(), 4, "{parts:?}");
        for part in &parts {
            assert!(threads_length(part) <= 500, "{}", threads_length(part));
        }
        assert_eq!(threads_length(&parts[0]), 494);
        assert_eq!(parts.join(" "), long);
    }

    #[test]
    fn given_a_long_threads_text_without_thread_when_prepared_then_it_is_refused_or_trimmed() {
        let mut content = text(&long_threads_text());
        assert_eq!(
            threads().prepare(&content),
            Err(ContentError::TextTooLong {
                platform: Platform::Threads,
                limit: 500,
                length: 1799
            })
        );
        content.trim_to_fit = true;
        let parts = threads().prepare(&content).unwrap().parts;
        assert_eq!(parts.len(), 1);
        assert!(parts[0].ends_with('…'), "{}", parts[0]);
        assert!(threads_length(&parts[0]) <= 500);
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
                question: None,
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

    fn rules(platform: Platform) -> ContentRules {
        ContentRules::for_platform(platform)
    }

    fn video() -> MediaItem {
        MediaItem {
            url: "https://cdn.example.com/v.mp4".into(),
            kind: MediaKind::Video,
            mime_type: "video/mp4".into(),
            probe: None,
        }
    }

    fn pdf() -> MediaItem {
        MediaItem {
            url: "https://cdn.example.com/deck.pdf".into(),
            kind: MediaKind::Document,
            mime_type: "application/pdf".into(),
            probe: None,
        }
    }

    #[test]
    fn given_a_pdf_when_posted_to_linkedin_then_it_is_accepted_alone_and_refused_elsewhere() {
        let mut deck = text("Our quarterly results");
        deck.media = vec![pdf()];
        assert_eq!(
            rules(Platform::Linkedin).prepare(&deck).unwrap().media,
            deck.media
        );

        for platform in [Platform::X, Platform::FacebookPages, Platform::Threads] {
            assert_eq!(
                rules(platform).prepare(&deck),
                Err(ContentError::DocumentsNotSupported { platform, index: 0 }),
                "{platform}"
            );
        }

        let mut with_image = deck.clone();
        with_image.media.push(image(1));
        assert_eq!(
            rules(Platform::Linkedin).prepare(&with_image),
            Err(ContentError::DocumentMustBeAlone {
                platform: Platform::Linkedin,
                count: 2
            })
        );

        let mut spreadsheet = deck.clone();
        spreadsheet.media[0].mime_type = "application/vnd.ms-excel".into();
        let refused = rules(Platform::Linkedin).prepare(&spreadsheet).unwrap_err();
        assert!(refused.to_string().contains("application/pdf"), "{refused}");
    }

    fn jpeg(n: usize) -> MediaItem {
        MediaItem {
            url: format!("https://cdn.example.com/{n}.jpg"),
            mime_type: "image/jpeg".into(),
            ..image(n)
        }
    }

    #[test]
    fn every_platform_has_rules() {
        for platform in Platform::ALL {
            assert_eq!(rules(platform).platform, platform);
        }
    }

    #[test]
    fn platforms_that_publish_media_refuse_a_post_without_it() {
        for (platform, what) in [
            (Platform::Youtube, "one video"),
            (Platform::Tiktok, "a video or 1-35 photos"),
            (Platform::Instagram, "an image, a video or a carousel"),
        ] {
            let error = rules(platform).prepare(&text("hello")).unwrap_err();
            assert_eq!(error, ContentError::MediaRequired { platform, what });
            assert!(error.to_string().contains(what));
        }
    }

    #[test]
    fn a_facebook_video_keeps_its_title() {
        let content = Content {
            text: "A clip".into(),
            title: Some("Clip".into()),
            media: vec![video()],
            ..Content::default()
        };
        let prepared = rules(Platform::FacebookPages).prepare(&content).unwrap();
        assert_eq!(prepared.title.as_deref(), Some("Clip"));
        let long = Content {
            title: Some("t".repeat(256)),
            ..content
        };
        assert!(rules(Platform::FacebookPages).prepare(&long).is_err());
    }

    #[test]
    fn youtube_derives_a_title_from_the_first_line_at_a_word_boundary() {
        let long_line = "word ".repeat(30);
        let content = Content {
            text: format!("{long_line}\nsecond line"),
            media: vec![video()],
            ..Content::default()
        };
        let prepared = rules(Platform::Youtube).prepare(&content).unwrap();
        let title = prepared.title.unwrap();
        assert!(title.chars().count() <= 100, "{title}");
        assert!(title.ends_with("word…"), "{title}");
        let given = Content {
            title: Some("My video".into()),
            ..content
        };
        assert_eq!(
            rules(Platform::Youtube)
                .prepare(&given)
                .unwrap()
                .title
                .as_deref(),
            Some("My video")
        );
    }

    #[test]
    fn a_title_over_the_limit_names_the_limit() {
        let content = Content {
            text: "body".into(),
            title: Some("t".repeat(301)),
            options: Box::new(PublishOptions {
                reddit: crate::options::RedditOptions {
                    subreddit: Some("rust".into()),
                    ..Default::default()
                },
                ..Default::default()
            }),
            ..Content::default()
        };
        assert_eq!(
            rules(Platform::Reddit).prepare(&content),
            Err(ContentError::TitleTooLong {
                platform: Platform::Reddit,
                limit: 300,
                length: 301
            })
        );
    }

    #[test]
    fn reddit_needs_a_subreddit_and_drops_hashtags() {
        let mut content = Content {
            text: "hello".into(),
            hashtags: vec!["rust".into()],
            ..Content::default()
        };
        assert!(matches!(
            rules(Platform::Reddit).prepare(&content),
            Err(ContentError::InvalidOptions(_))
        ));
        content.options.reddit.subreddit = Some("rust".into());
        let prepared = rules(Platform::Reddit).prepare(&content).unwrap();
        assert_eq!(prepared.parts, ["hello"]);
        assert_eq!(prepared.title.as_deref(), Some("hello"));
    }

    /// Content for r/rust with `media`.
    fn to_reddit(media: Vec<MediaItem>) -> Content {
        let mut content = Content {
            text: "Look at these".into(),
            media,
            ..Content::default()
        };
        content.options.reddit.subreddit = Some("rust".into());
        content
    }

    fn png(n: usize) -> Vec<MediaItem> {
        (0..n).map(image).collect()
    }

    #[test]
    fn given_two_to_twenty_images_when_prepared_for_reddit_then_they_pass_as_a_gallery() {
        for count in [1, 2, 20] {
            let prepared = rules(Platform::Reddit).prepare(&to_reddit(png(count)));
            assert_eq!(prepared.unwrap().media.len(), count);
        }
    }

    #[test]
    fn given_twenty_one_images_when_prepared_for_reddit_then_the_gallery_limit_is_named() {
        let error = rules(Platform::Reddit)
            .prepare(&to_reddit(png(21)))
            .unwrap_err();
        assert_eq!(
            error,
            ContentError::TooManyImages {
                platform: Platform::Reddit,
                limit: 20,
                count: 21
            }
        );
        assert_eq!(
            error.to_string(),
            "reddit allows at most 20 images per post; got 21"
        );
    }

    #[test]
    fn given_a_video_with_a_poster_when_prepared_for_reddit_then_it_passes() {
        let mut content = to_reddit(vec![video()]);
        content.options.reddit.thumbnail_url = Some("https://cdn.example.com/poster.png".into());
        assert!(rules(Platform::Reddit).prepare(&content).is_ok());
        let mut mov = content.clone();
        mov.media[0].mime_type = "video/quicktime".into();
        assert!(rules(Platform::Reddit).prepare(&mov).is_ok());
    }

    #[test]
    fn given_a_reddit_video_without_a_poster_when_prepared_then_the_option_is_named() {
        let error = rules(Platform::Reddit)
            .prepare(&to_reddit(vec![video()]))
            .unwrap_err();
        assert!(matches!(
            &error,
            ContentError::InvalidOptions(OptionsError {
                option: "thumbnail_url",
                ..
            })
        ));
        assert!(
            error
                .to_string()
                .starts_with("options.reddit.thumbnail_url: "),
            "{error}"
        );
    }

    #[test]
    fn given_images_and_a_video_when_prepared_for_reddit_then_mixing_is_refused() {
        let mut content = to_reddit(vec![image(0), video()]);
        content.options.reddit.thumbnail_url = Some("https://cdn.example.com/poster.png".into());
        assert_eq!(
            rules(Platform::Reddit).prepare(&content),
            Err(ContentError::VideoMustBeAlone {
                platform: Platform::Reddit,
                count: 2
            })
        );
        content.media = vec![video(), video()];
        assert!(matches!(
            rules(Platform::Reddit).prepare(&content),
            Err(ContentError::VideoMustBeAlone { count: 2, .. })
        ));
    }

    #[test]
    fn given_a_webm_when_prepared_for_reddit_then_mp4_and_mov_are_named() {
        let mut content = to_reddit(vec![MediaItem {
            mime_type: "video/webm".into(),
            ..video()
        }]);
        content.options.reddit.thumbnail_url = Some("https://cdn.example.com/poster.png".into());
        let error = rules(Platform::Reddit).prepare(&content).unwrap_err();
        assert!(
            error.to_string().contains("video/mp4, video/quicktime"),
            "{error}"
        );
    }

    #[test]
    fn given_a_probed_reddit_video_when_over_fifteen_minutes_or_one_gigabyte_then_refused() {
        let clip = |item: MediaItem| {
            let mut content = to_reddit(vec![item]);
            content.options.reddit.thumbnail_url =
                Some("https://cdn.example.com/poster.png".into());
            content
        };
        let reddit = rules(Platform::Reddit);
        assert!(reddit
            .prepare(&clip(probed(900_000, 1920, 1080, 1024 * MB)))
            .is_ok());
        let long = reddit
            .prepare(&clip(probed(901_000, 1920, 1080, MB)))
            .unwrap_err();
        assert!(long.to_string().contains("0-900 seconds"), "{long}");
        let large = reddit
            .prepare(&clip(probed(60_000, 1920, 1080, 1024 * MB + 1)))
            .unwrap_err();
        assert!(
            large
                .to_string()
                .contains("up to 1024 MB; this one has 1025 MB"),
            "{large}"
        );
    }

    #[test]
    fn hashtags_go_at_the_end_and_count_against_instagrams_limit() {
        let mut content = Content {
            text: "look".into(),
            media: vec![jpeg(0)],
            hashtags: vec!["one".into(), "#two".into()],
            ..Content::default()
        };
        let prepared = rules(Platform::Instagram).prepare(&content).unwrap();
        assert_eq!(prepared.parts, ["look\n\n#one #two"]);
        content.hashtags = (0..31).map(|i| format!("tag{i}")).collect();
        assert_eq!(
            rules(Platform::Instagram).prepare(&content),
            Err(ContentError::TooManyHashtags {
                platform: Platform::Instagram,
                limit: 30,
                count: 31
            })
        );
        content.hashtags = vec!["not a tag".into()];
        assert_eq!(
            rules(Platform::Instagram).prepare(&content),
            Err(ContentError::InvalidHashtag { index: 0 })
        );
    }

    #[test]
    fn a_link_is_an_attachment_where_the_platform_has_them_and_text_elsewhere() {
        let content = Content {
            text: "read this".into(),
            link: Some("https://example.com/a".into()),
            ..Content::default()
        };
        let linkedin = rules(Platform::Linkedin).prepare(&content).unwrap();
        assert_eq!(linkedin.parts, ["read this"]);
        assert_eq!(linkedin.link.as_deref(), Some("https://example.com/a"));
        let on_x = x().prepare(&content).unwrap();
        assert_eq!(on_x.parts, ["read this https://example.com/a"]);
        assert_eq!(on_x.link, None);
        let bad = Content {
            link: Some("ftp://example.com".into()),
            ..content
        };
        assert_eq!(x().prepare(&bad), Err(ContentError::InvalidLink));
    }

    #[test]
    fn a_long_text_is_trimmed_only_when_asked() {
        let long = "word ".repeat(100);
        let mut content = text(&long);
        assert!(matches!(
            x().prepare(&content),
            Err(ContentError::TextTooLong { .. })
        ));
        content.trim_to_fit = true;
        let prepared = x().prepare(&content).unwrap();
        let part = &prepared.parts[0];
        assert!(x_weighted_length(part) <= 280, "{part}");
        assert!(part.ends_with("word…"), "{part}");
    }

    #[test]
    fn instagram_carousels_mix_images_and_videos_up_to_ten() {
        let mixed = Content {
            text: "album".into(),
            media: vec![jpeg(0), video()],
            ..Content::default()
        };
        assert!(rules(Platform::Instagram).prepare(&mixed).is_ok());
        let eleven = Content {
            media: (0..10).map(jpeg).chain([video()]).collect(),
            ..mixed
        };
        assert_eq!(
            rules(Platform::Instagram).prepare(&eleven),
            Err(ContentError::TooManyMedia {
                platform: Platform::Instagram,
                limit: 10,
                count: 11
            })
        );
    }

    #[test]
    fn text_is_counted_the_way_each_platform_counts_it() {
        let youtube = rules(Platform::Youtube);
        assert_eq!(youtube.text_length("é"), 2);
        let tiktok = rules(Platform::Tiktok);
        assert_eq!(tiktok.text_length("😀"), 2);
        assert_eq!(rules(Platform::Linkedin).text_length("😀"), 1);
    }

    fn probed(duration_ms: u64, width: u32, height: u32, bytes: u64) -> MediaItem {
        MediaItem {
            probe: Some(VideoProbe {
                duration_ms,
                width,
                height,
                bytes,
            }),
            ..video()
        }
    }

    #[test]
    fn probed_videos_are_checked_against_duration_size_frame_and_placement() {
        let clip = |item: MediaItem| Content {
            text: "clip".into(),
            media: vec![item],
            ..Content::default()
        };
        assert!(x()
            .prepare(&clip(probed(30_000, 1280, 720, 5 * MB)))
            .is_ok());
        let error = x()
            .prepare(&clip(probed(200_000, 1280, 720, 5 * MB)))
            .unwrap_err();
        assert!(matches!(error, ContentError::VideoDuration { .. }));
        assert!(error.to_string().contains("0.5-140 seconds"), "{error}");
        assert!(matches!(
            x().prepare(&clip(probed(30_000, 1280, 720, 600 * MB))),
            Err(ContentError::VideoTooLarge { limit_mb: 512, .. })
        ));
        assert!(matches!(
            rules(Platform::Tiktok).prepare(&clip(probed(30_000, 7680, 4320, MB))),
            Err(ContentError::VideoResolution { limit: 4096, .. })
        ));
        // Instagram: 90 s is a fine reel but too long for a story.
        let mut reel = clip(probed(90_000, 1080, 1920, 50 * MB));
        assert!(rules(Platform::Instagram).prepare(&reel).is_ok());
        reel.options.instagram.placement = Some("stories".into());
        let error = rules(Platform::Instagram).prepare(&reel).unwrap_err();
        assert!(
            error.to_string().contains("stories take videos of 3-60"),
            "{error}"
        );
        // A YouTube Short must be vertical.
        let mut short = clip(probed(30_000, 1920, 1080, 50 * MB));
        short.options.youtube.shorts = true;
        assert!(matches!(
            rules(Platform::Youtube).prepare(&short),
            Err(ContentError::VideoAspect { .. })
        ));
        // Without a probe nothing can be said: the platform decides.
        assert!(x().prepare(&clip(video())).is_ok());
    }

    fn reel(media: Vec<MediaItem>) -> Content {
        let mut content = Content {
            text: "a reel".into(),
            media,
            ..Content::default()
        };
        content.options.facebook_pages.placement = Some("reels".into());
        content
    }

    #[test]
    fn given_a_facebook_reel_when_it_is_not_exactly_one_video_then_it_is_refused() {
        let pages = rules(Platform::FacebookPages);
        assert!(pages.prepare(&reel(vec![video()])).is_ok());
        assert_eq!(
            pages.prepare(&reel(vec![jpeg(1)])),
            Err(ContentError::ReelNeedsOneVideo {
                platform: Platform::FacebookPages,
                videos: 0,
                other: 1
            })
        );
        let error = pages.prepare(&reel(Vec::new())).unwrap_err();
        assert_eq!(
            error,
            ContentError::ReelNeedsOneVideo {
                platform: Platform::FacebookPages,
                videos: 0,
                other: 0
            }
        );
        assert!(
            error
                .to_string()
                .contains("options.facebook_pages.placement = \"reels\""),
            "the message names the rule: {error}"
        );
        // Two videos are already refused by the feed's one-video rule.
        assert!(pages.prepare(&reel(vec![video(), video()])).is_err());
        // The same content as a feed post is a video post.
        let mut feed = reel(vec![video()]);
        feed.options.facebook_pages.placement = None;
        assert!(pages.prepare(&feed).is_ok());
    }

    #[test]
    fn given_a_probed_facebook_reel_when_prepared_then_metas_reel_limits_apply() {
        let pages = rules(Platform::FacebookPages);
        assert!(pages
            .prepare(&reel(vec![probed(30_000, 1080, 1920, 40 * MB)]))
            .is_ok());
        assert!(pages
            .prepare(&reel(vec![probed(90_000, 540, 960, 40 * MB)]))
            .is_ok());
        let error = pages
            .prepare(&reel(vec![probed(91_000, 1080, 1920, 40 * MB)]))
            .unwrap_err();
        assert!(matches!(
            error,
            ContentError::VideoDuration { min_secs, max_secs, .. } if min_secs == 3.0 && max_secs == 90.0
        ));
        assert!(
            error
                .to_string()
                .contains("reels take videos of 3-90 seconds"),
            "{error}"
        );
        assert!(matches!(
            pages.prepare(&reel(vec![probed(2_000, 1080, 1920, MB)])),
            Err(ContentError::VideoDuration { .. })
        ));
        assert_eq!(
            pages.prepare(&reel(vec![probed(30_000, 360, 640, MB)])),
            Err(ContentError::VideoTooSmall {
                platform: Platform::FacebookPages,
                index: 0,
                what: "reels take",
                min_width: 540,
                min_height: 960,
                width: 360,
                height: 640
            })
        );
        let error = pages
            .prepare(&reel(vec![probed(30_000, 1920, 1080, MB)]))
            .unwrap_err();
        assert!(matches!(error, ContentError::VideoAspect { .. }));
        assert!(error.to_string().contains("0.56-0.57"), "{error}");
        // A feed video on the Page has no such limits.
        let mut feed = reel(vec![probed(600_000, 1920, 1080, MB)]);
        feed.options.facebook_pages.placement = Some("feed".into());
        assert!(pages.prepare(&feed).is_ok());
    }

    #[test]
    fn given_a_facebook_reel_with_a_link_when_prepared_then_the_link_joins_the_description() {
        let pages = rules(Platform::FacebookPages);
        let mut content = reel(vec![video()]);
        content.link = Some("https://example.com/more".into());
        let prepared = pages.prepare(&content).unwrap();
        assert_eq!(prepared.parts, vec!["a reel https://example.com/more"]);
        assert_eq!(prepared.link, None, "a reel has no link attachment");
        content.options.facebook_pages.placement = None;
        content.media = Vec::new();
        let post = pages.prepare(&content).unwrap();
        assert_eq!(post.link.as_deref(), Some("https://example.com/more"));
        assert_eq!(post.parts, vec!["a reel"]);
    }
}
