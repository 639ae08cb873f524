//! The TikTok twin's shared state: creators, OAuth grants, publishes, uploads, limits, faults.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;

use super::{
    TiktokConfig, TiktokEndpoint, TiktokIssuedToken, TiktokPostSnapshot, TiktokPublishSnapshot,
    TiktokRefusal, TiktokStateSnapshot, TiktokUploadRecord, FNV_OFFSET,
};
use crate::faults::FaultQueue;
use crate::inspect::RequestLog;
use crate::lock::{TwinGuard, TwinLock};
use crate::oauth::random_token;
use crate::twin::Twin;

/// First post id handed out; TikTok video ids are 19-digit numbers.
const FIRST_POST_ID: u64 = 7_300_000_000_000_000_001;
/// Upload requests kept in the state dump.
const MAX_UPLOAD_RECORDS: usize = 10_000;

/// A TikTok account and its posting settings (what creator_info reports).
#[derive(Debug, Clone)]
pub(crate) struct Creator {
    pub open_id: String,
    pub union_id: String,
    pub username: String,
    pub display_name: String,
    /// Private accounts get FOLLOWER_OF_CREATOR instead of PUBLIC_TO_EVERYONE.
    pub private: bool,
    pub comment_disabled: bool,
    pub duet_disabled: bool,
    pub stitch_disabled: bool,
    pub max_video_post_duration_sec: u32,
    /// Banned from posting: `spam_risk_user_banned_from_posting`.
    pub banned: bool,
}

impl Creator {
    pub fn privacy_level_options(&self) -> Vec<&'static str> {
        if self.private {
            vec!["FOLLOWER_OF_CREATOR", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"]
        } else {
            vec!["PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"]
        }
    }

    pub fn profile_url(&self) -> String {
        format!("https://www.tiktok.com/@{}", self.username)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct AuthCode {
    pub redirect_uri: String,
    pub open_id: String,
    pub scopes: Vec<String>,
    pub code_challenge: Option<String>,
    pub expires_at: Instant,
}

/// An access or refresh token; `grant` ties the tokens of one authorization together.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub open_id: String,
    pub grant: u64,
    pub scopes: Vec<String>,
    pub expires_at: Instant,
    /// Expired by a fault, rotated away (refresh tokens) or revoked.
    pub invalidated: bool,
}

/// Direct Post or upload to the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Direct,
    Inbox,
}

/// One accepted init call.
#[derive(Debug, Clone)]
pub(crate) struct Publish {
    pub publish_id: String,
    pub open_id: String,
    pub mode: Mode,
    pub media_type: &'static str,
    pub source: &'static str,
    pub title: Option<String>,
    pub description: Option<String>,
    pub privacy_level: Option<String>,
    pub disable_comment: bool,
    pub disable_duet: bool,
    pub disable_stitch: bool,
    pub is_aigc: bool,
    pub video_size: Option<u64>,
    pub chunk_size: Option<u64>,
    pub total_chunk_count: Option<u64>,
    pub video_url: Option<String>,
    pub photo_images: Vec<String>,
    pub upload_id: Option<String>,
    pub upload_token: Option<String>,
    pub upload_expires_at: Instant,
    pub uploaded_bytes: u64,
    pub checksum: u64,
    /// When all media was in (upload complete, or init for PULL_FROM_URL).
    pub media_in_at: Option<Instant>,
    pub processing: Duration,
    /// Decided at init (injected) or by a `reject_media` fault; reported once processing ends.
    pub fail_reason: Option<String>,
    pub cancelled: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Set once the publish reached PUBLISH_COMPLETE / SEND_TO_USER_INBOX.
    pub done_at: Option<Instant>,
    pub post_id: Option<String>,
    /// The creator finished (or deleted) the inbox draft.
    pub inbox_completed: bool,
}

impl Publish {
    /// The status status/fetch reports at `now` (after [`Inner::settle`]).
    pub fn status(&self, now: Instant) -> &'static str {
        if self.cancelled {
            return "FAILED";
        }
        let processing = if self.source == "FILE_UPLOAD" {
            "PROCESSING_UPLOAD"
        } else {
            "PROCESSING_DOWNLOAD"
        };
        let Some(media_in_at) = self.media_in_at else {
            return processing;
        };
        if now < media_in_at + self.processing {
            return processing;
        }
        if self.fail_reason.is_some() {
            return "FAILED";
        }
        match self.mode {
            Mode::Direct => "PUBLISH_COMPLETE",
            Mode::Inbox => "SEND_TO_USER_INBOX",
        }
    }

    pub fn is_public(&self) -> bool {
        self.privacy_level.as_deref() == Some("PUBLIC_TO_EVERYONE")
    }

    /// Whether the publish still occupies one of the creator's pending inbox shares.
    pub fn pending_share(&self, now: Instant) -> bool {
        self.mode == Mode::Inbox && !self.inbox_completed && !matches!(self.status(now), "FAILED")
    }
}

/// A post on a creator's profile.
#[derive(Debug, Clone)]
pub(crate) struct Post {
    pub id: String,
    pub publish_id: String,
    pub open_id: String,
    pub media_type: &'static str,
    pub title: String,
    pub privacy_level: String,
    /// When moderation lets the post be public (only public posts get an id in status/fetch).
    pub public_at: Instant,
    /// When it was posted (`create_time`); unique to the millisecond, so `video/list`'s
    /// millisecond cursor never splits two posts.
    pub posted_at: chrono::DateTime<chrono::Utc>,
}

/// The caller of an API request.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub open_id: String,
    pub token: String,
    pub scopes: Vec<String>,
}

/// A TikTok error code queued for an endpoint by `/_sandbox/errors`.
#[derive(Debug, Clone)]
pub(crate) struct InjectedError {
    pub code: String,
    pub message: String,
    pub status: StatusCode,
}

#[derive(Debug)]
pub(crate) struct Inner {
    next_publish: u64,
    next_post: u64,
    next_grant: u64,
    pub creators: HashMap<String, Creator>,
    pub codes: HashMap<String, AuthCode>,
    pub access_tokens: HashMap<String, Token>,
    pub refresh_tokens: HashMap<String, Token>,
    pub issued: Vec<TiktokIssuedToken>,
    pub publishes: Vec<Publish>,
    pub posts: Vec<Post>,
    pub uploads: VecDeque<(u64, TiktokUploadRecord)>,
    next_upload: u64,
    pub faults: FaultQueue<TiktokEndpoint>,
    pub errors: HashMap<TiktokEndpoint, VecDeque<(InjectedError, u32)>>,
    pub fail_reasons: VecDeque<(String, u32)>,
    pub requests: RequestLog,
    /// Arrival times of recent limited requests per (access token, endpoint).
    windows: HashMap<(String, TiktokEndpoint), VecDeque<Instant>>,
    pub refusals: Vec<TiktokRefusal>,
    /// The app's webhook callback URL, as set in the developer portal.
    pub webhook_url: Option<String>,
}

impl Inner {
    pub fn creator_by_username(&mut self, username: &str) -> Creator {
        if let Some(c) = self.creators.values().find(|c| c.username == username) {
            return c.clone();
        }
        // Open ids are per app; the twin has one app, so one per username.
        let open_id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, username.as_bytes());
        let union_id = uuid::Uuid::new_v5(&open_id, b"union");
        let creator = Creator {
            open_id: open_id.to_string(),
            union_id: union_id.to_string(),
            username: username.to_owned(),
            display_name: if username == super::DEFAULT_USERNAME {
                "Herald Sandbox".to_owned()
            } else {
                username.to_owned()
            },
            private: false,
            comment_disabled: false,
            duet_disabled: false,
            stitch_disabled: false,
            max_video_post_duration_sec: 600,
            banned: false,
        };
        self.creators
            .insert(creator.open_id.clone(), creator.clone());
        creator
    }

    /// Issues a new access and refresh token for `open_id` (a new grant unless `grant` is given).
    pub fn issue_tokens(
        &mut self,
        config: &TiktokConfig,
        open_id: &str,
        scopes: Vec<String>,
        grant: Option<u64>,
    ) -> (String, String) {
        let grant = grant.unwrap_or_else(|| {
            self.next_grant += 1;
            self.next_grant
        });
        let now = Instant::now();
        let access = format!("act.{}", random_token(32));
        let refresh = format!("rft.{}", random_token(32));
        self.access_tokens.insert(
            access.clone(),
            Token {
                open_id: open_id.to_owned(),
                grant,
                scopes: scopes.clone(),
                expires_at: now + config.access_token_lifetime,
                invalidated: false,
            },
        );
        self.refresh_tokens.insert(
            refresh.clone(),
            Token {
                open_id: open_id.to_owned(),
                grant,
                scopes,
                expires_at: now + config.refresh_token_lifetime,
                invalidated: false,
            },
        );
        self.issued.push(TiktokIssuedToken {
            access_token: access.clone(),
            refresh_token: refresh.clone(),
            open_id: open_id.to_owned(),
        });
        (access, refresh)
    }

    /// Invalidates every token of `grant`.
    pub fn revoke_grant(&mut self, grant: u64) {
        for t in self
            .access_tokens
            .values_mut()
            .chain(self.refresh_tokens.values_mut())
        {
            if t.grant == grant {
                t.invalidated = true;
            }
        }
    }

    pub fn next_publish_number(&mut self) -> u64 {
        self.next_publish += 1;
        self.next_publish
    }

    /// Moves publishes whose processing ended to their outcome, creating posts for Direct Post.
    pub fn settle(&mut self, config: &TiktokConfig, now: Instant) {
        for i in 0..self.publishes.len() {
            let p = &self.publishes[i];
            if p.done_at.is_some() {
                continue;
            }
            let status = p.status(now);
            if !matches!(status, "PUBLISH_COMPLETE" | "SEND_TO_USER_INBOX") {
                continue;
            }
            let done_at = p.media_in_at.map_or(now, |t| t + p.processing);
            let ago = chrono::TimeDelta::from_std(now.saturating_duration_since(done_at))
                .unwrap_or_default();
            let previous = self.posts.last().map(|post| post.posted_at);
            let posted_at = (chrono::Utc::now() - ago).max(
                previous.map_or(chrono::DateTime::UNIX_EPOCH, |at| {
                    at + chrono::TimeDelta::milliseconds(1)
                }),
            );
            let post = (status == "PUBLISH_COMPLETE").then(|| Post {
                id: (FIRST_POST_ID + self.next_post).to_string(),
                publish_id: p.publish_id.clone(),
                open_id: p.open_id.clone(),
                media_type: p.media_type,
                title: p.title.clone().unwrap_or_default(),
                privacy_level: p.privacy_level.clone().unwrap_or_default(),
                public_at: done_at + config.moderation_delay,
                posted_at,
            });
            let p = &mut self.publishes[i];
            p.done_at = Some(done_at);
            if let Some(post) = post {
                p.post_id = Some(post.id.clone());
                self.next_post += 1;
                self.posts.push(post);
            }
        }
    }

    /// Direct posts of `open_id` not failed, created within the last 24 hours.
    pub fn recent_direct_posts(&self, open_id: &str, now: Instant) -> usize {
        let since = chrono::Utc::now() - chrono::TimeDelta::hours(24);
        self.publishes
            .iter()
            .filter(|p| p.open_id == open_id && p.mode == Mode::Direct)
            .filter(|p| p.created_at > since && p.status(now) != "FAILED")
            .count()
    }

    /// Creators who published directly within the last 24 hours.
    pub fn recent_posting_creators(&self) -> Vec<String> {
        let since = chrono::Utc::now() - chrono::TimeDelta::hours(24);
        let mut ids: Vec<String> = self
            .publishes
            .iter()
            .filter(|p| p.mode == Mode::Direct && p.created_at > since)
            .map(|p| p.open_id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Inbox shares of `open_id` still pending within `window`.
    pub fn pending_shares(&self, open_id: &str, window: Duration, now: Instant) -> usize {
        let since = chrono::Utc::now() - chrono::TimeDelta::from_std(window).unwrap_or_default();
        self.publishes
            .iter()
            .filter(|p| p.open_id == open_id && p.created_at > since && p.pending_share(now))
            .count()
    }

    pub fn take_fail_reason(&mut self) -> Option<String> {
        let (reason, remaining) = self.fail_reasons.front_mut()?;
        let reason = reason.clone();
        *remaining -= 1;
        if *remaining == 0 {
            self.fail_reasons.pop_front();
        }
        Some(reason)
    }

    /// Records an arriving chunk PUT; returns its sequence number for [`Inner::upload_record`].
    pub fn record_upload(&mut self, record: TiktokUploadRecord) -> u64 {
        if self.uploads.len() == MAX_UPLOAD_RECORDS {
            self.uploads.pop_front();
        }
        let seq = self.next_upload;
        self.next_upload += 1;
        self.uploads.push_back((seq, record));
        seq
    }

    /// The record of chunk PUT `seq`, if still kept.
    pub fn upload_record(&mut self, seq: u64) -> Option<&mut TiktokUploadRecord> {
        self.uploads
            .iter_mut()
            .rev()
            .find(|(s, _)| *s == seq)
            .map(|(_, r)| r)
    }
}

/// The TikTok twin's state, shared by all server workers.
#[derive(Debug)]
pub(crate) struct TiktokState {
    pub config: TiktokConfig,
    inner: TwinLock<Inner>,
}

impl TiktokState {
    pub fn new(config: TiktokConfig) -> Self {
        Self {
            config,
            inner: TwinLock::new(Inner {
                next_publish: 0,
                next_post: 0,
                next_grant: 0,
                creators: HashMap::new(),
                codes: HashMap::new(),
                access_tokens: HashMap::new(),
                refresh_tokens: HashMap::new(),
                issued: Vec::new(),
                publishes: Vec::new(),
                posts: Vec::new(),
                uploads: VecDeque::new(),
                next_upload: 0,
                faults: FaultQueue::new(TiktokEndpoint::Any),
                errors: HashMap::new(),
                fail_reasons: VecDeque::new(),
                requests: RequestLog::default(),
                windows: HashMap::new(),
                refusals: Vec::new(),
                webhook_url: None,
            }),
        }
    }

    /// The twin's state for one step of a request. Helpers take the guard's `&Inner`, never
    /// `&self`, so nothing under it locks again (see [`crate::lock`]).
    pub fn lock(&self) -> TwinGuard<'_, Inner> {
        self.inner.lock()
    }

    /// The caller of a valid, unexpired access token.
    pub fn authenticate(&self, token: &str) -> Option<Caller> {
        let inner = self.lock();
        let t = inner.access_tokens.get(token)?;
        (!t.invalidated && Instant::now() < t.expires_at).then(|| Caller {
            open_id: t.open_id.clone(),
            token: token.to_owned(),
            scopes: t.scopes.clone(),
        })
    }

    pub fn invalidate_token(&self, token: &str) {
        if let Some(t) = self.lock().access_tokens.get_mut(token) {
            t.invalidated = true;
        }
    }

    /// The creator `username` removes the app: their tokens stop working, then
    /// `authorization.removed` is delivered to the webhook URL, signed as TikTok signs it.
    /// Returns the HTTP status the callback answered, or `None` (no URL set, or no answer).
    pub async fn remove_authorization(&self, username: &str, reason: i64) -> Option<u16> {
        let (open_id, url) = {
            let mut inner = self.lock();
            let open_id = inner.creator_by_username(username).open_id;
            (open_id, inner.webhook_url.clone())
        };
        self.revoke_user(&open_id);
        let url = url?;
        let now = chrono::Utc::now().timestamp();
        let body = serde_json::json!({
            "client_key": self.config.client_key,
            "event": "authorization.removed",
            "create_time": now,
            "user_openid": open_id,
            "content": serde_json::json!({ "reason": reason }).to_string(),
        })
        .to_string();
        let signature = webhook_signature(&self.config.client_secret, now, &body);
        let answer = crate::outbound::client(Duration::from_secs(10))
            .post(&url)
            .header("Content-Type", "application/json")
            .header("TikTok-Signature", signature)
            .body(body)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match answer {
            Ok(response) => Some(response.status().as_u16()),
            Err(error) => {
                tracing::warn!(%error, "tiktok sandbox webhook delivery failed");
                None
            }
        }
    }

    /// Invalidates every token of the creator (the authorization was removed).
    pub fn revoke_user(&self, open_id: &str) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        for t in inner
            .access_tokens
            .values_mut()
            .chain(inner.refresh_tokens.values_mut())
        {
            if t.open_id == open_id {
                t.invalidated = true;
            }
        }
        // Publishes still processing fail as TikTok reports a removed authorization.
        let now = Instant::now();
        for p in inner.publishes.iter_mut() {
            if p.open_id == open_id && p.done_at.is_none() && p.status(now) != "FAILED" {
                p.fail_reason = Some("auth_removed".into());
            }
        }
    }

    /// Counts a request against the endpoint's sliding window; `false` (and a recorded refusal)
    /// when the limit is exceeded. Refused requests do not count.
    pub fn count_request(&self, caller: &Caller, endpoint: TiktokEndpoint, limit: u32) -> bool {
        let now = Instant::now();
        let window = self.config.rate_window;
        let mut inner = self.lock();
        let times = inner
            .windows
            .entry((caller.token.clone(), endpoint))
            .or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            times.pop_front();
        }
        if times.len() >= limit as usize {
            inner.refusals.push(TiktokRefusal {
                endpoint,
                open_id: caller.open_id.clone(),
                at: crate::rfc3339_now(),
            });
            return false;
        }
        times.push_back(now);
        true
    }

    /// Queues a TikTok error code for the next `times` calls of `endpoint`.
    pub fn inject_error(&self, endpoint: TiktokEndpoint, error: InjectedError, times: u32) {
        if times == 0 {
            return;
        }
        self.lock()
            .errors
            .entry(endpoint)
            .or_default()
            .push_back((error, times));
    }

    pub fn take_error(&self, endpoint: TiktokEndpoint) -> Option<InjectedError> {
        let mut inner = self.lock();
        let queue = inner.errors.get_mut(&endpoint)?;
        let (error, remaining) = queue.front_mut()?;
        let error = error.clone();
        *remaining -= 1;
        if *remaining == 0 {
            queue.pop_front();
        }
        Some(error)
    }
}

/// The public URL of a post: `https://www.tiktok.com/@{username}/video/{id}` (or `/photo/`).
pub(crate) fn post_url(username: &str, media_type: &str, id: &str) -> String {
    let kind = if media_type == "PHOTO" {
        "photo"
    } else {
        "video"
    };
    format!("https://www.tiktok.com/@{username}/{kind}/{id}")
}

/// A fresh publish with every optional field empty.
pub(crate) fn new_publish(
    publish_id: String,
    open_id: &str,
    mode: Mode,
    media_type: &'static str,
    source: &'static str,
) -> Publish {
    Publish {
        publish_id,
        open_id: open_id.to_owned(),
        mode,
        media_type,
        source,
        title: None,
        description: None,
        privacy_level: None,
        disable_comment: false,
        disable_duet: false,
        disable_stitch: false,
        is_aigc: false,
        video_size: None,
        chunk_size: None,
        total_chunk_count: None,
        video_url: None,
        photo_images: Vec::new(),
        upload_id: None,
        upload_token: None,
        upload_expires_at: Instant::now(),
        uploaded_bytes: 0,
        checksum: FNV_OFFSET,
        media_in_at: None,
        processing: Duration::ZERO,
        fail_reason: None,
        cancelled: false,
        created_at: chrono::Utc::now(),
        done_at: None,
        post_id: None,
        inbox_completed: false,
    }
}

/// `TikTok-Signature: t=<unix>,s=<hex>`: HMAC-SHA256 keyed with the client secret over
/// `"{t}.{body}"` (https://developers.tiktok.com/doc/webhooks-verification).
pub fn webhook_signature(client_secret: &str, timestamp: i64, body: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(client_secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={timestamp},s={hex}")
}

impl Twin for TiktokState {
    type Inner = Inner;
    type Endpoint = TiktokEndpoint;
    type Snapshot = TiktokStateSnapshot;

    fn state_lock(&self) -> &TwinLock<Inner> {
        &self.inner
    }

    fn faults(inner: &mut Inner) -> &mut FaultQueue<TiktokEndpoint> {
        &mut inner.faults
    }

    fn requests(inner: &mut Inner) -> &mut RequestLog {
        &mut inner.requests
    }

    /// Also drops the queued TikTok error codes and fail reasons.
    fn clear_faults(&self) -> usize {
        let mut inner = self.lock();
        let n = inner.faults.clear()
            + inner.errors.values().map(VecDeque::len).sum::<usize>()
            + inner.fail_reasons.len();
        inner.errors.clear();
        inner.fail_reasons.clear();
        n
    }

    fn snapshot(&self) -> TiktokStateSnapshot {
        let mut inner = self.lock();
        let now = Instant::now();
        inner.settle(&self.config, now);
        let username = |open_id: &str| {
            inner
                .creators
                .get(open_id)
                .map(|c| c.username.clone())
                .unwrap_or_default()
        };
        TiktokStateSnapshot {
            publishes: inner
                .publishes
                .iter()
                .map(|p| TiktokPublishSnapshot {
                    publish_id: p.publish_id.clone(),
                    open_id: p.open_id.clone(),
                    mode: match p.mode {
                        Mode::Direct => "direct",
                        Mode::Inbox => "inbox",
                    }
                    .to_owned(),
                    media_type: p.media_type.to_owned(),
                    source: p.source.to_owned(),
                    status: p.status(now).to_owned(),
                    fail_reason: if p.cancelled {
                        Some("publish_cancelled".to_owned())
                    } else if p.status(now) == "FAILED" {
                        p.fail_reason.clone()
                    } else {
                        None
                    },
                    title: p.title.clone(),
                    description: p.description.clone(),
                    privacy_level: p.privacy_level.clone(),
                    disable_comment: p.disable_comment,
                    disable_duet: p.disable_duet,
                    disable_stitch: p.disable_stitch,
                    is_aigc: p.is_aigc,
                    video_size: p.video_size,
                    chunk_size: p.chunk_size,
                    total_chunk_count: p.total_chunk_count,
                    video_url: p.video_url.clone(),
                    photo_images: p.photo_images.clone(),
                    uploaded_bytes: p.uploaded_bytes,
                    uploaded_checksum: format!("{:016x}", p.checksum),
                    post_id: p.post_id.clone(),
                })
                .collect(),
            posts: inner
                .posts
                .iter()
                .map(|p| {
                    let username = username(&p.open_id);
                    TiktokPostSnapshot {
                        id: p.id.clone(),
                        publish_id: p.publish_id.clone(),
                        open_id: p.open_id.clone(),
                        url: post_url(&username, p.media_type, &p.id),
                        username,
                        media_type: p.media_type.to_owned(),
                        title: p.title.clone(),
                        privacy_level: p.privacy_level.clone(),
                    }
                })
                .collect(),
            upload_requests: inner.uploads.iter().map(|(_, r)| r.clone()).collect(),
            tokens_issued: inner.issued.clone(),
            rate_limit_refusals: inner.refusals.clone(),
            requests: inner.requests.records(),
        }
    }
}
