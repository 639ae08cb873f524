//! The YouTube twin's shared state: Google accounts and channels, OAuth grants, upload
//! sessions, videos, quota, faults.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::quota::{Cost, Quota};
use super::{
    random_id, video_url, YouTubeByteRange, YouTubeConfig, YouTubeEndpoint, YouTubeIssuedToken,
    YouTubeSessionSnapshot, YouTubeStateSnapshot, YouTubeVideoSnapshot, DEFAULT_CHANNEL_TITLE,
    DEFAULT_USERNAME, NO_CHANNEL_PREFIX,
};
use crate::faults::FaultQueue;
use crate::inspect::RequestLog;
use crate::lock::{TwinGuard, TwinLock};
use crate::oauth::{random_token, PkceMethod};
use crate::twin::Twin;

/// A Google account, with its YouTube channel if it has one.
#[derive(Debug, Clone)]
pub(crate) struct User {
    /// Google's subject id (21 digits).
    pub id: String,
    pub username: String,
    pub channel: Option<Channel>,
}

#[derive(Debug, Clone)]
pub(crate) struct Channel {
    /// `UC` + 22 characters.
    pub id: String,
    pub title: String,
    pub handle: String,
    pub published_at: String,
}

impl Channel {
    /// The uploads playlist: the channel id with `UU` for `UC`.
    pub fn uploads_playlist(&self) -> String {
        format!("UU{}", &self.id[2..])
    }
}

#[derive(Debug, Clone)]
pub(crate) struct AuthCode {
    pub redirect_uri: String,
    pub user_id: String,
    pub scopes: Vec<String>,
    pub challenge: Option<(String, PkceMethod)>,
    /// A refresh token is issued with the access token.
    pub offline: bool,
    pub expires_at: Instant,
}

/// One user's consent to the client: every token of it dies when it is revoked.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub user_id: String,
    pub scopes: Vec<String>,
    pub revoked: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct AccessToken {
    pub grant_id: u64,
    pub expires_at: Instant,
    /// Expired by a fault.
    pub invalidated: bool,
}

/// The caller of an API request.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub user_id: String,
    pub token: String,
    pub grant_id: u64,
    pub scopes: Vec<String>,
}

/// What the upload's processing will end in.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    Processed,
    /// `uploadStatus=failed` with this `failureReason`.
    Failed(String),
    /// `uploadStatus=rejected` with this `rejectionReason`.
    Rejected(String),
}

/// The video metadata sent when the session was opened.
#[derive(Debug, Clone)]
pub(crate) struct Metadata {
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub category_id: String,
    pub privacy_status: String,
    pub publish_at: Option<String>,
    pub self_declared_made_for_kids: Option<bool>,
    pub embeddable: bool,
    pub license: String,
    pub parts: Vec<String>,
}

/// A resumable upload session.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub upload_id: String,
    pub user_id: String,
    pub channel_id: String,
    pub metadata: Metadata,
    pub content_type: String,
    pub total: Option<u64>,
    /// Bytes confirmed, and the SHA-256 of exactly those bytes.
    pub confirmed: u64,
    pub hasher: Sha256,
    pub expires_at: Instant,
    pub expired: bool,
    /// Processing as decided when the session opened (faults).
    pub processing: Duration,
    pub outcome: Outcome,
    pub video_id: Option<String>,
    /// A chunk PUT is reading its body right now.
    pub busy: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Video {
    pub id: String,
    pub channel_id: String,
    pub channel_title: String,
    pub upload_id: String,
    pub metadata: Metadata,
    pub bytes: u64,
    pub sha256: String,
    pub content_type: String,
    pub created: Instant,
    pub published_at: chrono::DateTime<chrono::Utc>,
    pub processing: Duration,
    pub outcome: Outcome,
    pub thumbnail_bytes: Option<u64>,
}

impl Video {
    /// Whether processing has ended at `now`.
    pub fn processed(&self, now: Instant) -> bool {
        now >= self.created + self.processing
    }

    /// `status.uploadStatus` at `now`.
    pub fn upload_status(&self, now: Instant) -> &'static str {
        if !self.processed(now) {
            return "uploaded";
        }
        match self.outcome {
            Outcome::Processed => "processed",
            Outcome::Failed(_) => "failed",
            Outcome::Rejected(_) => "rejected",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    next_user: u64,
    next_grant: u64,
    pub users: HashMap<String, User>,
    pub codes: HashMap<String, AuthCode>,
    pub grants: HashMap<u64, Grant>,
    pub access_tokens: HashMap<String, AccessToken>,
    pub refresh_tokens: HashMap<String, u64>,
    /// Users who have consented to the client before (Google then issues a refresh token only
    /// with `prompt=consent`).
    pub consented: HashSet<String>,
    pub issued: Vec<YouTubeIssuedToken>,
    pub sessions: HashMap<String, Session>,
    pub session_order: Vec<String>,
    pub videos: Vec<Video>,
    pub received: Vec<YouTubeByteRange>,
    pub quota: Quota,
    pub faults: FaultQueue<YouTubeEndpoint>,
    pub requests: RequestLog,
}

impl Inner {
    pub fn user_by_username(&mut self, username: &str) -> User {
        if let Some(user) = self.users.values().find(|u| u.username == username) {
            return user.clone();
        }
        let id = format!("1047290000{:011}", self.next_user);
        self.next_user += 1;
        let channel = (!username.starts_with(NO_CHANNEL_PREFIX)).then(|| Channel {
            id: format!("UC{}", random_id(22)),
            title: if username == DEFAULT_USERNAME {
                DEFAULT_CHANNEL_TITLE.to_owned()
            } else {
                username.to_owned()
            },
            handle: format!("@{username}"),
            published_at: crate::rfc3339_now(),
        });
        let user = User {
            id: id.clone(),
            username: username.to_owned(),
            channel,
        };
        self.users.insert(id, user.clone());
        user
    }

    pub fn new_grant(&mut self, user_id: &str, scopes: Vec<String>) -> u64 {
        let id = self.next_grant;
        self.next_grant += 1;
        self.grants.insert(
            id,
            Grant {
                user_id: user_id.to_owned(),
                scopes,
                revoked: false,
            },
        );
        id
    }

    /// An access token (and a refresh token when `with_refresh`) for `grant_id`.
    pub fn issue(
        &mut self,
        grant_id: u64,
        lifetime: Duration,
        with_refresh: bool,
    ) -> (String, Option<String>) {
        let access = format!("ya29.{}", random_token(48));
        self.access_tokens.insert(
            access.clone(),
            AccessToken {
                grant_id,
                expires_at: Instant::now() + lifetime,
                invalidated: false,
            },
        );
        let refresh = with_refresh.then(|| {
            let r = format!("1//{}", random_token(48));
            self.refresh_tokens.insert(r.clone(), grant_id);
            r
        });
        let user = self
            .grants
            .get(&grant_id)
            .and_then(|g| self.users.get(&g.user_id))
            .map(|u| u.username.clone())
            .unwrap_or_default();
        self.issued.push(YouTubeIssuedToken {
            access_token: access.clone(),
            refresh_token: refresh.clone(),
            user,
        });
        (access, refresh)
    }

    pub fn revoke_grant(&mut self, grant_id: u64) {
        if let Some(g) = self.grants.get_mut(&grant_id) {
            g.revoked = true;
        }
    }

    /// Videos of `channel_id`, newest first.
    pub fn channel_videos(&self, channel_id: &str) -> Vec<&Video> {
        let mut videos: Vec<&Video> = self
            .videos
            .iter()
            .filter(|v| v.channel_id == channel_id)
            .collect();
        videos.reverse();
        videos
    }
}

/// The YouTube twin's state, shared by all server workers.
#[derive(Debug)]
pub(crate) struct YouTubeState {
    pub config: YouTubeConfig,
    inner: TwinLock<Inner>,
}

impl YouTubeState {
    pub fn new(config: YouTubeConfig) -> Self {
        Self {
            config,
            inner: TwinLock::new(Inner {
                next_user: 1,
                next_grant: 1,
                users: HashMap::new(),
                codes: HashMap::new(),
                grants: HashMap::new(),
                access_tokens: HashMap::new(),
                refresh_tokens: HashMap::new(),
                consented: HashSet::new(),
                issued: Vec::new(),
                sessions: HashMap::new(),
                session_order: Vec::new(),
                videos: Vec::new(),
                received: Vec::new(),
                quota: Quota::new(chrono::Utc::now()),
                faults: FaultQueue::new(YouTubeEndpoint::Any),
                requests: RequestLog::default(),
            }),
        }
    }

    /// The twin's state for one step of a request. Helpers take the guard's `&Inner`, never
    /// `&self`, so nothing under it locks again (see [`crate::lock`]).
    pub fn lock(&self) -> TwinGuard<'_, Inner> {
        self.inner.lock()
    }

    /// The caller of a valid, unexpired access token of an unrevoked grant.
    pub fn authenticate(&self, token: &str) -> Option<Caller> {
        let inner = self.lock();
        let t = inner.access_tokens.get(token)?;
        let grant = inner.grants.get(&t.grant_id)?;
        (!t.invalidated && !grant.revoked && Instant::now() < t.expires_at).then(|| Caller {
            user_id: grant.user_id.clone(),
            token: token.to_owned(),
            grant_id: t.grant_id,
            scopes: grant.scopes.clone(),
        })
    }

    pub fn invalidate_token(&self, token: &str) {
        if let Some(t) = self.lock().access_tokens.get_mut(token) {
            t.invalidated = true;
        }
    }

    pub fn revoke_grant(&self, grant_id: u64) {
        self.lock().revoke_grant(grant_id);
    }

    /// Charges the project's quota; false when the day's quota does not allow the call.
    pub fn charge(&self, cost: Cost) -> bool {
        let now = chrono::Utc::now();
        self.lock()
            .quota
            .charge(cost, self.config.quota_model, self.config.daily_units, now)
    }

    /// Every open session answers 404 from now on.
    pub fn expire_sessions(&self) -> usize {
        let mut inner = self.lock();
        let mut n = 0;
        for s in inner.sessions.values_mut() {
            if s.video_id.is_none() && !s.expired {
                s.expired = true;
                n += 1;
            }
        }
        n
    }

    pub fn quota_snapshot(&self) -> super::YouTubeQuotaSnapshot {
        let now = chrono::Utc::now();
        self.lock()
            .quota
            .snapshot(self.config.quota_model, self.config.daily_units, now)
    }

    /// Sets the day's usage (tests exhaust the quota without thousands of calls).
    pub fn set_quota_usage(&self, units: Option<u64>, inserts: Option<u64>) {
        let now = chrono::Utc::now();
        let mut inner = self.lock();
        // Roll the day first so the values land on today.
        let _ = inner
            .quota
            .snapshot(self.config.quota_model, self.config.daily_units, now);
        if let Some(units) = units {
            inner.quota.units = units;
        }
        if let Some(inserts) = inserts {
            inner.quota.inserts = inserts;
        }
    }
}

/// Lowercase hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of the bytes fed to `hasher` so far.
pub(crate) fn digest_hex(hasher: &Sha256) -> String {
    hex(&hasher.clone().finalize())
}

impl Twin for YouTubeState {
    type Inner = Inner;
    type Endpoint = YouTubeEndpoint;
    type Snapshot = YouTubeStateSnapshot;

    fn state_lock(&self) -> &TwinLock<Inner> {
        &self.inner
    }

    fn faults(inner: &mut Inner) -> &mut FaultQueue<YouTubeEndpoint> {
        &mut inner.faults
    }

    fn requests(inner: &mut Inner) -> &mut RequestLog {
        &mut inner.requests
    }

    fn snapshot(&self) -> YouTubeStateSnapshot {
        let quota = self.quota_snapshot();
        let inner = self.lock();
        let now = Instant::now();
        YouTubeStateSnapshot {
            videos: inner
                .videos
                .iter()
                .map(|v| YouTubeVideoSnapshot {
                    id: v.id.clone(),
                    channel_id: v.channel_id.clone(),
                    upload_id: v.upload_id.clone(),
                    title: v.metadata.title.clone(),
                    description: v.metadata.description.clone(),
                    tags: v.metadata.tags.clone(),
                    category_id: v.metadata.category_id.clone(),
                    privacy_status: v.metadata.privacy_status.clone(),
                    self_declared_made_for_kids: v.metadata.self_declared_made_for_kids,
                    publish_at: v.metadata.publish_at.clone(),
                    bytes: v.bytes,
                    sha256: v.sha256.clone(),
                    content_type: v.content_type.clone(),
                    upload_status: v.upload_status(now).to_owned(),
                    thumbnail_bytes: v.thumbnail_bytes,
                    url: video_url(&v.id),
                    published_at: v
                        .published_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                })
                .collect(),
            sessions: inner
                .session_order
                .iter()
                .filter_map(|id| inner.sessions.get(id))
                .map(|s| YouTubeSessionSnapshot {
                    upload_id: s.upload_id.clone(),
                    channel_id: s.channel_id.clone(),
                    total: s.total,
                    confirmed: s.confirmed,
                    video_id: s.video_id.clone(),
                    expired: s.expired || (s.video_id.is_none() && now >= s.expires_at),
                })
                .collect(),
            received: inner.received.clone(),
            tokens_issued: inner.issued.clone(),
            quota,
            requests: inner.requests.records(),
        }
    }
}
