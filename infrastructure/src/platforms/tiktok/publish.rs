//! Publishing on TikTok (platform-facts §2.2–§2.6): creator info, the init call (Direct Post or
//! inbox; FILE_UPLOAD or PULL_FROM_URL; photos), the chunked upload, and the status polling.
//!
//! On TikTok the upload is the post: once the bytes are in, TikTok publishes without another
//! call. So `upload_media` does all of it and reports the publish as its "media id"; before
//! the first byte it hands the publish id and upload URL to `UploadProgress::session_opened`,
//! and a later attempt given that session asks TikTok where the publish stands: finished (take
//! it), still uploading (continue from the recorded offset), failed for an internal reason or
//! gone (start a new publish), failed for good (report it). Only the init call itself has an
//! unknown outcome if it times out; for FILE_UPLOAD that is harmless (a publish without bytes
//! never becomes a post). For PULL_FROM_URL and photos the init is the post, and TikTok offers
//! no way to look a private post, a photo post or an inbox draft up; so before that init the
//! intent is recorded as a session without a publish id, and an attempt that finds it (the
//! answer was lost, or the worker died) stops with a message instead of posting again. The
//! user's `retry` clears it. A public Direct Post video is the exception where the account
//! granted `video.list`: the attempt, and reconciliation, look it up among the account's public
//! videos (see `video_list`) and take it when it is there.
//!
//! The media is streamed from its URL one chunk at a time (at most the final chunk, under
//! twice the chunk size, is held in memory).
use std::time::Duration;

use bytes::Bytes;
use chrono::{TimeDelta, Utc};
use herald_domain::{ErrorClass, MediaKind, PlatformFailure};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::errors::{fail_reason, pending_share_limit, ApiError, CallContext};
use super::video_list::ListedVideo;
use super::{TiktokAdapter, MB};
use crate::media_source::Download;
use crate::platforms::media_not_taken;
use crate::platforms::{
    CreatedPost, MediaUpload, PostDraft, PostError, RateLimitGate, UploadProgress, UploadResume,
};
use crate::secret::Secret;

/// What `upload_media` returns for a photo that is not the last of its post: the post is
/// created with the last one, which carries every photo URL.
const PHOTO_PLACEHOLDER: &str = "photo:";
const MIN_CHUNK: u64 = 5 * MB;
const MAX_CHUNK: u64 = 64 * MB;
const MAX_VIDEO: u64 = 4 * 1024 * MB;
/// Retries of one chunk after a 5xx or a lost connection, before the attempt gives up.
const CHUNK_RETRIES: u32 = 3;
/// Status checks that may fail in a row (5xx, network) before the attempt gives up.
const STATUS_RETRIES: u32 = 3;
/// Times one upload may move back to where TikTok says it is, before the attempt gives up.
const MAX_RESYNCS: u32 = 3;

/// What Herald keeps about a publish, in the session handle and in the outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Meta {
    inbox: bool,
    photo: bool,
    username: Option<String>,
    /// PUBLIC_TO_EVERYONE: a post id appears after moderation.
    public: bool,
    max_duration_sec: Option<u64>,
}

/// The session handle given to `session_opened` (sealed by the publisher: the upload URL
/// carries an upload token).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    /// Empty while a PULL_FROM_URL / photo init is in flight (see `init_sent_at`).
    publish_id: String,
    /// When a PULL_FROM_URL / photo init was sent, until its answer is recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    init_sent_at: Option<chrono::DateTime<Utc>>,
    upload_url: Option<String>,
    video_size: Option<u64>,
    chunk_size: Option<u64>,
    #[serde(flatten)]
    meta: Meta,
}

/// What `upload_media` returns once TikTok reported the publish finished: the "media id" the
/// publisher hands to `create_post` and `find_post`. Holds no secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Outcome {
    publish_id: String,
    /// PUBLISH_COMPLETE or SEND_TO_USER_INBOX.
    status: String,
    post_id: Option<String>,
    /// The post's link as TikTok gave it (`share_url`), where Herald learned it that way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    share_url: Option<String>,
    #[serde(flatten)]
    meta: Meta,
}

/// What looking a pulled post up among the account's public videos gave.
enum Lookup {
    Found(Outcome),
    NotFound,
    /// Not a public Direct Post video, no caption to recognise it by, or no `video.list`.
    NotPossible,
}

/// `creator_info/query` data.
#[derive(Debug, Deserialize)]
pub(super) struct CreatorInfo {
    #[serde(default)]
    pub creator_username: String,
    #[serde(default)]
    privacy_level_options: Vec<String>,
    #[serde(default)]
    comment_disabled: bool,
    #[serde(default)]
    duet_disabled: bool,
    #[serde(default)]
    stitch_disabled: bool,
    max_video_post_duration_sec: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct InitData {
    publish_id: String,
    upload_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StatusData {
    status: String,
    fail_reason: Option<String>,
    #[serde(default)]
    publicaly_available_post_id: Vec<Value>,
    uploaded_bytes: Option<u64>,
}

impl StatusData {
    fn post_id(&self) -> Option<String> {
        self.publicaly_available_post_id
            .iter()
            .find_map(|v| match v {
                Value::Number(n) => Some(n.to_string()),
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                _ => None,
            })
    }

    fn done(&self) -> bool {
        matches!(
            self.status.as_str(),
            "PUBLISH_COMPLETE" | "SEND_TO_USER_INBOX"
        )
    }
}

/// The three init endpoints.
#[derive(Debug, Clone, Copy)]
enum Init {
    Video,
    InboxVideo,
    Content,
}

impl Init {
    fn endpoint(self) -> &'static str {
        match self {
            Init::Video => "tiktok_video_init",
            Init::InboxVideo => "tiktok_inbox_video_init",
            Init::Content => "tiktok_content_init",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Init::Video => "v2/post/publish/video/init/",
            Init::InboxVideo => "v2/post/publish/inbox/video/init/",
            Init::Content => "v2/post/publish/content/init/",
        }
    }

    fn ctx(self) -> CallContext {
        match self {
            Init::Video => CallContext::VIDEO_INIT,
            Init::InboxVideo => CallContext::INBOX_INIT,
            Init::Content => CallContext::CONTENT_INIT,
        }
    }
}

/// How a FILE_UPLOAD splits a video (platform-facts §2.4): chunks of `chunk` bytes, the last
/// one taking the trailing bytes; a video under 5 MB, or one that fits a chunk, goes whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChunkPlan {
    size: u64,
    chunk: u64,
    count: u64,
}

impl ChunkPlan {
    fn new(size: u64, configured: u64) -> Result<Self, PlatformFailure> {
        if size == 0 {
            return Err(PlatformFailure::new(
                ErrorClass::Permanent,
                "media_empty",
                "the video file is empty: check the media URL",
            ));
        }
        if size > MAX_VIDEO {
            return Err(PlatformFailure::new(
                ErrorClass::Permanent,
                "media_too_large",
                format!("the video is {size} bytes; TikTok takes at most 4 GB"),
            ));
        }
        let chunk = configured.clamp(MIN_CHUNK, MAX_CHUNK);
        if size < MIN_CHUNK || size <= chunk {
            return Ok(Self {
                size,
                chunk: size,
                count: 1,
            });
        }
        Ok(Self {
            size,
            chunk,
            count: size / chunk,
        })
    }

    /// The plan an init already announced.
    fn announced(size: u64, chunk: u64) -> Self {
        let chunk = chunk.clamp(1, size.max(1));
        Self {
            size,
            chunk,
            count: (size / chunk).max(1),
        }
    }

    /// The length of the chunk starting at `pos` (a chunk boundary).
    fn len_at(&self, pos: u64) -> u64 {
        if pos / self.chunk + 1 >= self.count {
            self.size - pos
        } else {
            self.chunk
        }
    }

    /// The chunk boundary at or before `offset`.
    fn align(&self, offset: u64) -> u64 {
        (offset.min(self.size) / self.chunk).min(self.count - 1) * self.chunk
    }
}

/// The media, streamed from its URL.
struct Source {
    download: Download,
    /// Total size of the file.
    size: u64,
}

impl Source {
    /// Exactly `n` bytes, or a failure if the file ends first.
    async fn read_exact(&mut self, n: u64) -> Result<Bytes, PlatformFailure> {
        let n = usize::try_from(n).map_err(|_| too_large_chunk())?;
        self.download.read_exact(n).await
    }

    async fn skip(&mut self, mut n: u64) -> Result<(), PlatformFailure> {
        while n > 0 {
            let step = n.min(MAX_CHUNK);
            self.read_exact(step).await?;
            n -= step;
        }
        Ok(())
    }
}

fn too_large_chunk() -> PlatformFailure {
    PlatformFailure::new(
        ErrorClass::Permanent,
        "media_chunk_too_large",
        "a chunk does not fit in memory on this platform: lower TIKTOK_CHUNK_BYTES",
    )
}

/// Opens the media at `offset` through the shared media source (SSRF policy, range requests).
async fn open_source(t: &TiktokAdapter, url: &str, offset: u64) -> Result<Source, PlatformFailure> {
    let download = t.media_source.open(url, offset).await?;
    let size = download.require_total()?;
    Ok(Source { download, size })
}

/// Bytes TikTok holds according to an upload response's `Content-Range: bytes 0-{last}/{total}`
/// (`bytes */{total}` when it holds none).
fn uploaded_per_header(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    let value = headers.get("content-range")?.to_str().ok()?;
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, _) = rest.split_once('/')?;
    if range.trim() == "*" {
        return Some(0);
    }
    let last: u64 = range.split_once('-')?.1.trim().parse().ok()?;
    Some(last + 1)
}

/// How one chunk `PUT` ended.
enum Put {
    /// Accepted; TikTok now holds this many bytes.
    Accepted(u64),
    /// 416: the range does not match TikTok's progress (which it may say).
    Mismatch(Option<u64>),
    /// 403 (the upload URL expired) or 404 (no such upload task): start a new publish.
    Gone(u16),
    Failed(PlatformFailure),
}

/// One FILE_UPLOAD: its session, the media URL, the chunks' Content-Type and the plan.
#[derive(Clone, Copy)]
struct Transfer<'a> {
    session: &'a Session,
    url: &'a str,
    mime: &'a str,
    plan: ChunkPlan,
}

/// How sending the chunks ended.
enum Sent {
    Complete,
    /// The upload URL expired or the task is gone.
    Gone,
}

/// How one publish ended inside `upload_media`.
enum Step {
    Done(String),
    /// Start a new publish (the upload URL expired or the task disappeared).
    Restart,
}

impl TiktokAdapter {
    /// `creator_info/query` (20 a minute). Its spam refusals come with HTTP 200.
    pub(super) async fn creator_info(
        &self,
        token: &Secret,
        limits: &dyn RateLimitGate,
    ) -> Result<CreatorInfo, PlatformFailure> {
        let endpoint = "tiktok_creator_info";
        self.take_slot(endpoint, self.config.limits.creator_info, limits)
            .await?;
        let request = self
            .api
            .post(self.config.api_url("v2/post/publish/creator_info/query/"))
            .bearer_auth(token.expose())
            .header(CONTENT_TYPE, "application/json; charset=UTF-8");
        self.call_data(endpoint, limits, request, CallContext::CREATOR_INFO)
            .await
    }

    /// `status/fetch` (30 a minute).
    async fn status(
        &self,
        token: &Secret,
        publish_id: &str,
        limits: &dyn RateLimitGate,
    ) -> Result<StatusData, PlatformFailure> {
        let endpoint = "tiktok_status";
        self.take_slot(endpoint, self.config.limits.status, limits)
            .await?;
        let request = self
            .api
            .post(self.config.api_url("v2/post/publish/status/fetch/"))
            .bearer_auth(token.expose())
            .json(&json!({ "publish_id": publish_id }));
        self.call_data(endpoint, limits, request, CallContext::STATUS)
            .await
    }

    /// An init call (6 a minute each). Inbox uploads are counted against the 5 pending shares,
    /// so a refusal can say when the quota is back.
    async fn init(
        &self,
        token: &Secret,
        kind: Init,
        body: &Value,
        inbox: bool,
        limits: &dyn RateLimitGate,
    ) -> Result<InitData, PlatformFailure> {
        let shares = &self.config.limits;
        let share_reset = if inbox {
            limits
                .acquire_documented(
                    "tiktok_inbox_share",
                    shares.pending_shares,
                    shares.pending_share_window,
                )
                .await
                .err()
        } else {
            None
        };
        self.take_slot(kind.endpoint(), shares.init, limits).await?;
        let request = self
            .api
            .post(self.config.api_url(kind.path()))
            .bearer_auth(token.expose())
            .header(CONTENT_TYPE, "application/json; charset=UTF-8")
            .json(body);
        match self
            .call_data::<InitData>(kind.endpoint(), limits, request, kind.ctx())
            .await
        {
            Ok(init) => {
                tracing::info!(publish_id = %init.publish_id, inbox, "TikTok accepted the publish");
                Ok(init)
            }
            Err(failure) if failure.code == "spam_risk_too_many_pending_share" => {
                Err(pending_share_limit(
                    &ApiError::default(),
                    shares.pending_shares,
                    share_reset,
                    Utc::now(),
                ))
            }
            other => other,
        }
    }

    /// The account's username for links, where the token may read it (best effort).
    async fn username(&self, token: &Secret, limits: &dyn RateLimitGate) -> Option<String> {
        self.user_info(token, "open_id,username", limits)
            .await
            .ok()
            .and_then(|u| u.username)
            .filter(|u| !u.is_empty())
    }

    /// Polls until TikTok reports the publish finished or failed; returns the outcome.
    async fn wait(
        &self,
        token: &Secret,
        publish_id: &str,
        meta: &Meta,
        limits: &dyn RateLimitGate,
    ) -> Result<String, PlatformFailure> {
        let deadline =
            Utc::now() + TimeDelta::from_std(self.config.status_poll_max_wait).unwrap_or_default();
        let mut failures = 0;
        loop {
            match self.status(token, publish_id, limits).await {
                Ok(status) if status.done() => return Ok(outcome(publish_id, &status, meta)),
                Ok(status) if status.status == "FAILED" => {
                    let reason = status.fail_reason.as_deref().unwrap_or("internal");
                    return Err(fail_reason(reason, meta.max_duration_sec));
                }
                Ok(_) => failures = 0,
                Err(f) if f.class == ErrorClass::Retryable && failures < STATUS_RETRIES => {
                    failures += 1;
                }
                Err(f) => return Err(f),
            }
            if Utc::now() >= deadline {
                return Err(PlatformFailure::new(
                    ErrorClass::Retryable,
                    "tiktok_still_processing",
                    format!(
                        "TikTok is still processing the post after {} s; Herald checks again on the next attempt",
                        self.config.status_poll_max_wait.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(self.config.status_poll_interval).await;
        }
    }

    /// Sends the chunks of an upload from `from` (a chunk boundary) to the end.
    async fn send_chunks(
        &self,
        token: &Secret,
        transfer: &Transfer<'_>,
        from: u64,
        progress: &dyn UploadProgress,
        limits: &dyn RateLimitGate,
    ) -> Result<Sent, PlatformFailure> {
        let Transfer {
            session,
            url,
            mime,
            plan,
        } = *transfer;
        let upload_url = session.upload_url.as_deref().unwrap_or_default();
        let mut source = open_source(self, url, from).await?;
        let mut pos = from;
        let mut resyncs = 0;
        while pos < plan.size {
            let len = plan.len_at(pos);
            let bytes = source.read_exact(len).await?;
            let mut tries = 0;
            let next = loop {
                match put_chunk(self, upload_url, mime, &bytes, pos, plan.size).await {
                    // Herald's own count: the progress header's format is not pinned down
                    // (last byte index or byte count), so it only informs the logs.
                    Put::Accepted(held) => {
                        if held != pos + len {
                            tracing::debug!(
                                pos,
                                len,
                                held,
                                "TikTok's progress header differs from the chunk sent"
                            );
                        }
                        break pos + len;
                    }
                    Put::Gone(status) => {
                        tracing::info!(status, publish_id = %session.publish_id, "TikTok upload URL expired or gone; starting a new publish");
                        return Ok(Sent::Gone);
                    }
                    Put::Mismatch(header) => {
                        // `uploaded_bytes` of status/fetch is a byte count; the header is the
                        // fallback.
                        let held = match self.status(token, &session.publish_id, limits).await {
                            Ok(status) => status.uploaded_bytes.or(header).unwrap_or(0),
                            Err(failure) => match header {
                                Some(held) => held,
                                None => return Err(failure),
                            },
                        };
                        tracing::info!(
                            pos,
                            held,
                            "TikTok holds a different part of the upload; following it"
                        );
                        break held;
                    }
                    Put::Failed(f) if f.class == ErrorClass::Retryable && tries < CHUNK_RETRIES => {
                        tries += 1;
                        tracing::info!(pos, tries, code = %f.code, "retrying the chunk");
                        tokio::time::sleep(Duration::from_millis(250 << tries)).await;
                    }
                    Put::Failed(f) => return Err(f),
                }
            };
            if next >= plan.size {
                progress.chunk_sent(plan.size, plan.size).await;
                return Ok(Sent::Complete);
            }
            if next == pos + len {
                pos = next;
                progress.chunk_sent(pos, plan.size).await;
                continue;
            }
            // TikTok is elsewhere: ahead (this chunk was in already) or behind.
            resyncs += 1;
            if resyncs > MAX_RESYNCS || next % plan.chunk != 0 {
                return Err(PlatformFailure::new(
                    ErrorClass::Retryable,
                    "tiktok_upload_out_of_sync",
                    "TikTok's record of the upload keeps disagreeing with Herald's; Herald will try again",
                ));
            }
            if next > pos + len {
                source.skip(next - pos - len).await?;
            } else {
                source = open_source(self, url, next).await?;
            }
            pos = next;
            progress.chunk_sent(pos, plan.size).await;
        }
        Ok(Sent::Complete)
    }

    /// One publish from the start: creator info, init, session, upload, wait.
    async fn start(
        &self,
        token: &Secret,
        upload: &MediaUpload<'_>,
        photo: bool,
        limits: &dyn RateLimitGate,
        progress: &dyn UploadProgress,
    ) -> Result<Step, PlatformFailure> {
        let post = upload.post;
        let options = &post.options.tiktok;
        let inbox = options.mode.as_deref() == Some("inbox");
        let mut meta = Meta {
            inbox,
            photo,
            ..Meta::default()
        };
        let mut post_info = serde_json::Map::new();
        let caption = (!post.text.trim().is_empty()).then(|| post.text.clone());
        if inbox {
            meta.username = self.username(token, limits).await;
            if photo {
                post_info.insert("title".into(), json!(post.title));
                post_info.insert("description".into(), json!(caption));
            }
        } else {
            let info = self.creator_info(token, limits).await?;
            let privacy = options.privacy_level.as_deref().unwrap_or("SELF_ONLY");
            if !info.privacy_level_options.iter().any(|o| o == privacy) {
                return Err(PlatformFailure::new(
                    ErrorClass::Permanent,
                    "privacy_level_option_mismatch",
                    format!(
                        "options.tiktok.privacy_level '{privacy}' is not one this account may use; choose one of {}",
                        info.privacy_level_options.join(", ")
                    ),
                ));
            }
            meta.username = Some(info.creator_username.clone()).filter(|u| !u.is_empty());
            meta.public = privacy == "PUBLIC_TO_EVERYONE";
            meta.max_duration_sec = info.max_video_post_duration_sec;
            post_info.insert("privacy_level".into(), json!(privacy));
            // The creator's own settings win over the request.
            post_info.insert(
                "disable_comment".into(),
                json!(options.disable_comment || info.comment_disabled),
            );
            if photo {
                post_info.insert("title".into(), json!(post.title));
                post_info.insert("description".into(), json!(caption));
            } else {
                post_info.insert("title".into(), json!(caption));
                post_info.insert(
                    "disable_duet".into(),
                    json!(options.disable_duet || info.duet_disabled),
                );
                post_info.insert(
                    "disable_stitch".into(),
                    json!(options.disable_stitch || info.stitch_disabled),
                );
                post_info.insert("is_aigc".into(), json!(options.is_aigc));
            }
        }
        post_info.retain(|_, v| !v.is_null());

        let session = |publish_id: String, upload: Option<(String, ChunkPlan)>| Session {
            publish_id,
            init_sent_at: None,
            video_size: upload.as_ref().map(|(_, p)| p.size),
            chunk_size: upload.as_ref().map(|(_, p)| p.chunk),
            upload_url: upload.map(|(u, _)| u),
            meta: meta.clone(),
        };
        let pulled = photo || self.config.pulls(&upload.item.url);
        if pulled {
            let (kind, body) = if photo {
                let urls: Vec<&str> = post.media.iter().map(|m| m.url.as_str()).collect();
                let cover = options.photo_cover_index.unwrap_or(0);
                (
                    Init::Content,
                    json!({
                        "media_type": "PHOTO",
                        "post_mode": if inbox { "MEDIA_UPLOAD" } else { "DIRECT_POST" },
                        "post_info": post_info,
                        "source_info": {"source": "PULL_FROM_URL", "photo_images": urls, "photo_cover_index": cover},
                    }),
                )
            } else {
                let source = json!({"source": "PULL_FROM_URL", "video_url": upload.item.url});
                if inbox {
                    (Init::InboxVideo, json!({ "source_info": source }))
                } else {
                    (
                        Init::Video,
                        json!({ "post_info": post_info, "source_info": source }),
                    )
                }
            };
            // The init is the post: record the intent first (see the module documentation).
            let in_flight = Session {
                init_sent_at: Some(Utc::now()),
                ..session(String::new(), None)
            };
            progress.session_opened(&seal(&in_flight)).await;
            let init = match self.init(token, kind, &body, inbox, limits).await {
                Ok(init) => init,
                Err(failure) => {
                    if !outcome_unknown(&failure) {
                        // TikTok answered: nothing was created, the next attempt starts anew.
                        progress
                            .session_opened(&seal(&session(String::new(), None)))
                            .await;
                    }
                    return Err(failure);
                }
            };
            let opened = session(init.publish_id.clone(), None);
            progress.session_opened(&seal(&opened)).await;
            return self
                .wait(token, &init.publish_id, &meta, limits)
                .await
                .map(Step::Done);
        }

        // FILE_UPLOAD: the size comes from the media URL before the init.
        let probe = open_source(self, &upload.item.url, 0).await?;
        let plan = ChunkPlan::new(probe.size, self.config.chunk_bytes)?;
        drop(probe);
        let source = json!({
            "source": "FILE_UPLOAD",
            "video_size": plan.size,
            "chunk_size": plan.chunk,
            "total_chunk_count": plan.count,
        });
        let (kind, body) = if inbox {
            (Init::InboxVideo, json!({ "source_info": source }))
        } else {
            (
                Init::Video,
                json!({ "post_info": post_info, "source_info": source }),
            )
        };
        let init = self.init(token, kind, &body, inbox, limits).await?;
        let Some(upload_url) = init.upload_url.clone() else {
            return Err(PlatformFailure::new(
                ErrorClass::Permanent,
                "unexpected_response",
                "TikTok answered the FILE_UPLOAD init without an upload_url; check the TikTok API base URL",
            ));
        };
        let opened = session(init.publish_id.clone(), Some((upload_url.clone(), plan)));
        progress.session_opened(&seal(&opened)).await;
        progress.started(plan.size).await;
        let mime = video_mime(&upload.item.mime_type);
        match self
            .send_chunks(
                token,
                &Transfer {
                    session: &opened,
                    url: &upload.item.url,
                    mime,
                    plan,
                },
                0,
                progress,
                limits,
            )
            .await?
        {
            Sent::Complete => self
                .wait(token, &init.publish_id, &meta, limits)
                .await
                .map(Step::Done),
            Sent::Gone => Ok(Step::Restart),
        }
    }

    /// Continues what an earlier attempt started; `None` when a new publish is needed.
    async fn resume(
        &self,
        token: &Secret,
        upload: &MediaUpload<'_>,
        resume: &UploadResume,
        limits: &dyn RateLimitGate,
        progress: &dyn UploadProgress,
    ) -> Result<Option<String>, PlatformFailure> {
        let Ok(session) = serde_json::from_str::<Session>(resume.session.expose()) else {
            tracing::warn!("the recorded TikTok session cannot be read; starting a new publish");
            return Ok(None);
        };
        if let Some(sent_at) = session.init_sent_at {
            return match self
                .look_up_pulled(token, upload.post, &session.meta, sent_at, limits)
                .await?
            {
                Lookup::Found(found) => Ok(Some(to_media_id(&found))),
                Lookup::NotFound => Err(unanswered_init(sent_at, &session.meta, true)),
                Lookup::NotPossible => Err(unanswered_init(sent_at, &session.meta, false)),
            };
        }
        if session.publish_id.is_empty() {
            // An init TikTok refused: nothing to resume.
            return Ok(None);
        }
        let status = match self.status(token, &session.publish_id, limits).await {
            Ok(status) => status,
            Err(f)
                if matches!(
                    f.code.as_str(),
                    "invalid_publish_id" | "token_not_authorized_for_specified_publish_id"
                ) =>
            {
                return Ok(None)
            }
            Err(f) => return Err(f),
        };
        if status.done() {
            return Ok(Some(outcome(&session.publish_id, &status, &session.meta)));
        }
        if status.status == "FAILED" {
            let failure = fail_reason(
                status.fail_reason.as_deref().unwrap_or("internal"),
                session.meta.max_duration_sec,
            );
            // An internal failure is worth a new publish; anything else is final.
            return if failure.class == ErrorClass::Retryable {
                Ok(None)
            } else {
                Err(failure)
            };
        }
        let uploading = status.status == "PROCESSING_UPLOAD";
        if let (true, Some(_), Some(size), Some(chunk)) = (
            uploading,
            session.upload_url.as_deref(),
            session.video_size,
            session.chunk_size,
        ) {
            let held = status.uploaded_bytes.unwrap_or(0);
            if held < size {
                let plan = ChunkPlan::announced(size, chunk);
                let from = plan.align(resume.bytes_confirmed.max(held));
                tracing::info!(
                    publish_id = %session.publish_id,
                    recorded = resume.bytes_confirmed,
                    held,
                    from,
                    "resuming the TikTok upload"
                );
                progress.started(size).await;
                let mime = video_mime(&upload.item.mime_type);
                match self
                    .send_chunks(
                        token,
                        &Transfer {
                            session: &session,
                            url: &upload.item.url,
                            mime,
                            plan,
                        },
                        from,
                        progress,
                        limits,
                    )
                    .await?
                {
                    Sent::Complete => {}
                    Sent::Gone => return Ok(None),
                }
            }
        }
        self.wait(token, &session.publish_id, &session.meta, limits)
            .await
            .map(Some)
    }

    /// Looks a pulled post sent at `sent_at` up among the account's public videos, where that
    /// can find it: a public Direct Post video with a caption to recognise it by, and Herald
    /// asking for `video.list`. A token without the scope (granted before Herald asked for it,
    /// or unticked by the user) is refused with `scope_not_authorized`: nothing to look in.
    async fn look_up_pulled(
        &self,
        token: &Secret,
        post: &PostDraft,
        meta: &Meta,
        sent_at: chrono::DateTime<Utc>,
        limits: &dyn RateLimitGate,
    ) -> Result<Lookup, PlatformFailure> {
        let caption = post.text.trim();
        let listable = meta.public && !meta.inbox && !meta.photo && !caption.is_empty();
        if !listable || !self.config.lists_videos() {
            return Ok(Lookup::NotPossible);
        }
        match self
            .find_public_video(token, caption, sent_at, limits)
            .await
        {
            Ok(Some(video)) => {
                tracing::info!(post_id = %video.id, "found the pulled TikTok post among the public videos");
                Ok(Lookup::Found(listed_outcome(video, meta)))
            }
            Ok(None) => Ok(Lookup::NotFound),
            Err(failure)
                if matches!(
                    failure.code.as_str(),
                    "scope_not_authorized" | "scope_permission_missed"
                ) =>
            {
                tracing::info!(%failure, "the TikTok token may not list videos");
                Ok(Lookup::NotPossible)
            }
            Err(failure) => Err(failure),
        }
    }
}

/// Whether a failed init may still have reached TikTok: no answer came (timed out or lost
/// after sending). Any answer, even a 5xx error, says the publish was not created.
fn outcome_unknown(failure: &PlatformFailure) -> bool {
    failure.code == "network_error"
}

/// An earlier attempt sent a PULL_FROM_URL / photo init and never learned its outcome, and
/// TikTok may have the post. Unless it was `looked_up` among the public videos, TikTok has no
/// way to look it up; either way, asking the user is the only way not to post twice.
fn unanswered_init(
    sent_at: chrono::DateTime<Utc>,
    meta: &Meta,
    looked_up: bool,
) -> PlatformFailure {
    let place = if meta.inbox {
        "the account's TikTok inbox"
    } else {
        "the TikTok profile (including private posts)"
    };
    let search = if looked_up {
        // A pulled video appears in the list only once TikTok has downloaded and processed it.
        ". Herald looked among the account's public videos and did not find it yet, but TikTok may still be processing it (a pulled video can take minutes to appear)."
    } else {
        ", and TikTok offers no way to look it up."
    };
    PlatformFailure::new(
        ErrorClass::Permanent,
        "tiktok_outcome_unknown",
        format!(
            "TikTok may already have this post: Herald sent it at {} but never received TikTok's answer{search} Check {place}; if the post is not there, retry the job and Herald sends it again",
            sent_at.format("%Y-%m-%d %H:%M:%S UTC")
        ),
    )
}

/// The session handle as the secret `session_opened` takes.
fn seal(session: &Session) -> Secret {
    Secret::new(serde_json::to_string(session).unwrap_or_default())
}

fn outcome(publish_id: &str, status: &StatusData, meta: &Meta) -> String {
    to_media_id(&Outcome {
        publish_id: publish_id.to_owned(),
        status: status.status.clone(),
        post_id: status.post_id(),
        share_url: None,
        meta: meta.clone(),
    })
}

/// The outcome as the "media id" `upload_media` returns.
fn to_media_id(outcome: &Outcome) -> String {
    serde_json::to_string(outcome).unwrap_or_default()
}

/// A pulled post found among the public videos: finished, public, its video id the post id. The
/// publish id stays unknown (it came with the lost answer).
fn listed_outcome(video: ListedVideo, meta: &Meta) -> Outcome {
    Outcome {
        publish_id: String::new(),
        status: "PUBLISH_COMPLETE".into(),
        post_id: Some(video.id),
        share_url: video.share_url.filter(|u| !u.is_empty()),
        meta: meta.clone(),
    }
}

/// The Content-Type of a chunk: the item's own if TikTok takes it, else MP4.
fn video_mime(mime: &str) -> &'static str {
    match mime {
        "video/quicktime" => "video/quicktime",
        "video/webm" => "video/webm",
        _ => "video/mp4",
    }
}

/// `PUT {upload_url}` with one chunk.
async fn put_chunk(
    t: &TiktokAdapter,
    upload_url: &str,
    mime: &str,
    bytes: &Bytes,
    pos: u64,
    size: u64,
) -> Put {
    let len = bytes.len() as u64;
    let response = t
        .upload
        .put(upload_url)
        .header(CONTENT_TYPE, mime)
        .header(CONTENT_LENGTH, len)
        .header(
            "Content-Range",
            format!("bytes {pos}-{}/{size}", pos + len - 1),
        )
        .body(bytes.clone())
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(e) => {
            return Put::Failed(http_transport(&e));
        }
    };
    let status = response.status().as_u16();
    let held = uploaded_per_header(response.headers());
    let body = response.bytes().await.unwrap_or_default();
    let said = {
        let error = super::api_error(&body);
        if error.message.is_empty() {
            String::new()
        } else {
            format!(": {}", error.message)
        }
    };
    match status {
        201 | 206 => Put::Accepted(held.unwrap_or(pos + len)),
        416 => Put::Mismatch(held),
        403 | 404 => Put::Gone(status),
        429 => Put::Failed(
            PlatformFailure::new(
                ErrorClass::RateLimited,
                "http_429",
                format!("TikTok is rate-limiting the upload{said}; Herald waits before trying again"),
            )
            .not_before(Utc::now() + TimeDelta::seconds(60)),
        ),
        s if s >= 500 => Put::Failed(PlatformFailure::new(
            ErrorClass::Retryable,
            format!("http_{s}"),
            format!("TikTok failed to take a chunk of the video (HTTP {s}){said}; Herald will try again"),
        )),
        s => Put::Failed(PlatformFailure::new(
            ErrorClass::Permanent,
            format!("http_{s}"),
            format!("TikTok refused a chunk of the video (HTTP {s}){said}; the upload's size or headers do not match what the init announced"),
        )),
    }
}

fn http_transport(error: &reqwest::Error) -> PlatformFailure {
    crate::platforms::http::default_transport_failure("TikTok", CallContext::UPLOAD.action, error)
}

/// See [`crate::platforms::PlatformAdapter::upload_media`] and the module documentation.
pub(super) async fn upload_media(
    t: &TiktokAdapter,
    token: &Secret,
    upload: &MediaUpload<'_>,
    limits: &dyn RateLimitGate,
    progress: &dyn UploadProgress,
) -> Result<String, PlatformFailure> {
    let photo = match upload.item.kind {
        MediaKind::Image => true,
        MediaKind::Video => false,
        MediaKind::Gif => {
            return Err(PlatformFailure::new(
                ErrorClass::Permanent,
                "media_unsupported",
                "TikTok does not take GIFs: post a video or JPEG/WebP photos",
            ))
        }
        MediaKind::Document => {
            return Err(media_not_taken(
                "TikTok",
                "documents",
                "post its pages as photos",
            ))
        }
    };
    let kinds_mixed = upload
        .post
        .media
        .iter()
        .any(|m| (m.kind == MediaKind::Image) != photo);
    if (!photo && upload.count != 1) || kinds_mixed {
        return Err(PlatformFailure::new(
            ErrorClass::Permanent,
            "media_unsupported",
            "a TikTok post is one video or 1 to 35 photos, not a mix",
        ));
    }
    if photo && upload.index + 1 < upload.count {
        return Ok(format!("{PHOTO_PLACEHOLDER}{}", upload.index));
    }
    if let Some(resume) = upload.resume {
        if let Some(done) = t.resume(token, upload, resume, limits, progress).await? {
            return Ok(done);
        }
    }
    for _ in 0..2 {
        match t.start(token, upload, photo, limits, progress).await? {
            Step::Done(outcome) => return Ok(outcome),
            Step::Restart => continue,
        }
    }
    Err(PlatformFailure::new(
        ErrorClass::Retryable,
        "tiktok_upload_gone",
        "TikTok dropped the upload twice in a row (URL expired or task gone); Herald will try again",
    ))
}

/// The finished publish the publisher recorded for `draft`, if any.
fn recorded_outcome(draft: &PostDraft) -> Option<Outcome> {
    draft
        .media_ids
        .iter()
        .rev()
        .find(|id| !id.starts_with(PHOTO_PLACEHOLDER))
        .and_then(|id| serde_json::from_str(id).ok())
}

fn created(t: &TiktokAdapter, outcome: &Outcome, post_id: Option<String>) -> CreatedPost {
    let username = outcome.meta.username.as_deref();
    match post_id {
        Some(id) => CreatedPost {
            url: outcome
                .share_url
                .clone()
                .unwrap_or_else(|| t.config.post_url(username, outcome.meta.photo, &id)),
            post_id: id,
        },
        // Not public (yet), or in the creator's inbox: the publish id and the profile.
        None => CreatedPost {
            post_id: outcome.publish_id.clone(),
            url: t.config.profile_url(username),
        },
    }
}

/// The post TikTok published in `upload_media`. A public post gets its id after moderation,
/// which is waited for a little; otherwise the publish id stands in, with the profile's link.
pub(super) async fn create_post(
    t: &TiktokAdapter,
    token: &Secret,
    draft: &PostDraft,
    limits: &dyn RateLimitGate,
) -> Result<CreatedPost, PostError> {
    let Some(outcome) = recorded_outcome(draft) else {
        return Err(PostError::Failed(PlatformFailure::new(
            ErrorClass::Permanent,
            "media_required",
            "a TikTok post needs a video or 1 to 35 photos",
        )));
    };
    let mut post_id = outcome.post_id.clone();
    let moderated = outcome.status == "PUBLISH_COMPLETE" && outcome.meta.public;
    if post_id.is_none() && moderated {
        let deadline =
            Utc::now() + TimeDelta::from_std(t.config.public_id_wait).unwrap_or_default();
        while post_id.is_none() && Utc::now() < deadline {
            match t.status(token, &outcome.publish_id, limits).await {
                Ok(status) => post_id = status.post_id(),
                // The post exists either way; the id is a nicety.
                Err(failure) => {
                    tracing::info!(%failure, "no public TikTok post id yet");
                    break;
                }
            }
            if post_id.is_none() {
                tokio::time::sleep(t.config.status_poll_interval).await;
            }
        }
    }
    Ok(created(t, &outcome, post_id))
}

/// What a publish of `draft` would record, if it is one pulled video (else `None`).
fn pulled_video_meta(t: &TiktokAdapter, draft: &PostDraft) -> Option<Meta> {
    let [item] = draft.media.as_slice() else {
        return None;
    };
    if item.kind != MediaKind::Video || !t.config.pulls(&item.url) {
        return None;
    }
    let options = &draft.options.tiktok;
    let username = &draft.account.username;
    Some(Meta {
        inbox: options.mode.as_deref() == Some("inbox"),
        photo: false,
        username: (!username.is_empty()).then(|| username.clone()),
        public: options.privacy_level.as_deref() == Some("PUBLIC_TO_EVERYONE"),
        max_duration_sec: None,
    })
}

/// Reconciliation. `upload_media` records a publish only once TikTok reported it finished, so a
/// recorded one is the post (TikTok is asked only for a public id it may have assigned since).
/// Without one no upload finished: a pulled public video may still be on TikTok (its init is the
/// post) and is looked up among the public videos; any other publish left half-way is resumed
/// by the next attempt through its session.
pub(super) async fn find_post(
    t: &TiktokAdapter,
    token: &Secret,
    since: chrono::DateTime<Utc>,
    draft: &PostDraft,
    limits: &dyn RateLimitGate,
) -> Result<Option<CreatedPost>, PlatformFailure> {
    let Some(outcome) = recorded_outcome(draft) else {
        let Some(meta) = pulled_video_meta(t, draft) else {
            return Ok(None);
        };
        return Ok(
            match t.look_up_pulled(token, draft, &meta, since, limits).await? {
                Lookup::Found(found) => Some(created(t, &found, found.post_id.clone())),
                Lookup::NotFound | Lookup::NotPossible => None,
            },
        );
    };
    let post_id = match outcome.post_id.clone() {
        Some(id) => Some(id),
        None => match t.status(token, &outcome.publish_id, limits).await {
            Ok(status) => status.post_id(),
            Err(failure) => {
                tracing::info!(%failure, "no public TikTok post id; using the publish id");
                None
            }
        },
    };
    Ok(Some(created(t, &outcome, post_id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_plans_follow_the_media_transfer_guide() {
        let p = ChunkPlan::new(50 * MB + 123, 10 * MB).unwrap();
        assert_eq!((p.chunk, p.count), (10 * MB, 5));
        assert_eq!(p.len_at(40 * MB), 10 * MB + 123);
        assert_eq!(p.len_at(0), 10 * MB);
        // Under 5 MB, or within one chunk: whole.
        assert_eq!(ChunkPlan::new(3 * MB, 10 * MB).unwrap().count, 1);
        let whole = ChunkPlan::new(8 * MB, 10 * MB).unwrap();
        assert_eq!((whole.chunk, whole.count), (8 * MB, 1));
        // The configured size is clamped to 5..64 MB.
        assert_eq!(ChunkPlan::new(200 * MB, MB).unwrap().chunk, 5 * MB);
        assert_eq!(ChunkPlan::new(400 * MB, 100 * MB).unwrap().chunk, 64 * MB);
        // 16 MB in 5 MB chunks: 5, 5, 6.
        let p = ChunkPlan::new(16 * MB, 5 * MB).unwrap();
        assert_eq!(p.count, 3);
        assert_eq!(p.len_at(10 * MB), 6 * MB);
        assert_eq!(p.align(7 * MB), 5 * MB);
        assert_eq!(p.align(16 * MB), 10 * MB);
        assert!(ChunkPlan::new(0, 5 * MB).is_err());
        assert!(ChunkPlan::new(5 * 1024 * MB, 10 * MB).is_err());
    }

    #[test]
    fn progress_headers() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("content-range", "bytes 0-5242879/16777216".parse().unwrap());
        assert_eq!(uploaded_per_header(&h), Some(5 * MB));
        h.insert("content-range", "bytes */16777216".parse().unwrap());
        assert_eq!(uploaded_per_header(&h), Some(0));
    }

    #[test]
    fn outcomes_round_trip_and_hold_no_upload_url() {
        let status = StatusData {
            status: "PUBLISH_COMPLETE".into(),
            fail_reason: None,
            publicaly_available_post_id: vec![json!(7_300_000_000_000_000_001u64)],
            uploaded_bytes: None,
        };
        let meta = Meta {
            username: Some("ann".into()),
            public: true,
            ..Meta::default()
        };
        let text = outcome("v_pub_file~v2.1", &status, &meta);
        assert!(!text.contains("upload"));
        let parsed: Outcome = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed.post_id.as_deref(), Some("7300000000000000001"));
        assert_eq!(parsed.meta, meta);
        let draft = PostDraft {
            media_ids: vec!["photo:0".into(), text],
            ..PostDraft::default()
        };
        assert_eq!(
            recorded_outcome(&draft).unwrap().publish_id,
            "v_pub_file~v2.1"
        );
    }
}
