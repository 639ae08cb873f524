//! The X twin's shared state: accounts, OAuth artefacts, media, posts, faults.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{
    XConfig, XEndpoint, XIssuedTokens, XMediaSnapshot, XPollSnapshot, XPostSnapshot,
    XStateSnapshot, DEFAULT_NAME, DEFAULT_USERNAME, DEFAULT_USER_ID,
};
use crate::faults::FaultQueue;
use crate::inspect::RequestLog;
use crate::lock::{TwinGuard, TwinLock};
use crate::oauth::{random_token, PkceMethod};
use crate::ratelimit::{RateLimiter, RateStatus};
use crate::twin::Twin;

/// X's snowflake epoch (2010-11-04T01:42:54.657Z), so ids look and sort like X's.
const SNOWFLAKE_EPOCH_MS: i64 = 1_288_834_974_657;

/// An X account.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub id: String,
    pub username: String,
    pub name: String,
}

/// A one-time authorization code.
#[derive(Debug, Clone)]
pub(crate) struct AuthCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub challenge: String,
    pub method: PkceMethod,
    pub scopes: Vec<String>,
    pub user_id: String,
    pub expires_at: Instant,
}

/// One user's consent to one client; refresh rotation stays within a grant.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub user_id: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub revoked: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct AccessToken {
    pub grant_id: u64,
    pub expires_at: Instant,
    /// Rotated away, revoked, or expired by a fault.
    pub invalidated: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct RefreshToken {
    pub grant_id: u64,
    /// Single use: set once exchanged or revoked.
    pub used: bool,
}

/// The authenticated caller of an API request.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub user_id: String,
    pub access_token: String,
    pub grant_id: u64,
    pub scopes: Vec<String>,
}

/// Media processing after FINALIZE.
#[derive(Debug, Clone)]
pub(crate) struct Processing {
    pub started: Instant,
    pub duration: Duration,
    pub fail: bool,
}

/// A media upload.
#[derive(Debug, Clone)]
pub(crate) struct Media {
    pub id: u64,
    pub media_key: String,
    pub owner: String,
    pub media_type: String,
    pub category: String,
    pub total_bytes: u64,
    /// Bytes per segment index; a re-sent segment replaces the earlier one.
    pub segments: BTreeMap<u32, u64>,
    pub created_epoch: i64,
    /// Whether the platform processes it asynchronously (video, GIF).
    pub async_processing: bool,
    /// Processing faults received before FINALIZE, applied when it starts.
    pub pending_slow: Option<Duration>,
    pub pending_reject: bool,
    pub processing: Option<Processing>,
}

/// Processing state as X reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProcState {
    InProgress { percent: u32, check_after: u64 },
    Succeeded,
    Failed,
}

impl ProcState {
    pub fn name(self) -> &'static str {
        match self {
            ProcState::InProgress { .. } => "in_progress",
            ProcState::Succeeded => "succeeded",
            ProcState::Failed => "failed",
        }
    }
}

impl Media {
    pub fn bytes_received(&self) -> u64 {
        self.segments.values().sum()
    }

    /// `None` while still uploading.
    pub fn proc_state(&self, now: Instant) -> Option<ProcState> {
        let p = self.processing.as_ref()?;
        let elapsed = now.saturating_duration_since(p.started);
        if elapsed >= p.duration {
            return Some(if p.fail {
                ProcState::Failed
            } else {
                ProcState::Succeeded
            });
        }
        let percent = (elapsed.as_secs_f64() / p.duration.as_secs_f64() * 100.0) as u32;
        let left = (p.duration - elapsed).as_secs_f64().ceil() as u64;
        Some(ProcState::InProgress {
            percent: percent.min(99),
            check_after: left.max(1),
        })
    }
}

/// A created post.
#[derive(Debug, Clone)]
pub(crate) struct Post {
    pub id: u64,
    pub author_id: String,
    pub text: String,
    pub media_ids: Vec<u64>,
    pub poll: Option<XPollSnapshot>,
    pub in_reply_to: Option<u64>,
    pub quote_of: Option<u64>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Everything behind the lock.
pub(crate) struct XInner {
    last_id: u64,
    next_grant: u64,
    pub users: HashMap<String, User>,
    pub auth_codes: HashMap<String, AuthCode>,
    pub grants: HashMap<u64, Grant>,
    pub access_tokens: HashMap<String, AccessToken>,
    pub refresh_tokens: HashMap<String, RefreshToken>,
    pub tokens_issued: Vec<XIssuedTokens>,
    pub media: BTreeMap<u64, Media>,
    pub posts: Vec<Post>,
    pub post_index: HashMap<u64, usize>,
    /// (author, text) of every post with text, for duplicate detection.
    pub texts: HashSet<(String, String)>,
    rate: RateLimiter<(String, XEndpoint)>,
    faults: FaultQueue<XEndpoint>,
    log: RequestLog,
}

impl XInner {
    /// A fresh snowflake-like id: time-ordered, 19 digits, strictly increasing.
    pub fn next_id(&mut self) -> u64 {
        let ms = (chrono::Utc::now().timestamp_millis() - SNOWFLAKE_EPOCH_MS).max(0) as u64;
        let id = (ms << 22).max(self.last_id + 1);
        self.last_id = id;
        id
    }

    /// Issues a token pair for `grant_id` and records the plaintexts.
    pub fn issue_tokens(
        &mut self,
        grant_id: u64,
        lifetime: Duration,
        already_expired: bool,
    ) -> (String, Option<String>) {
        let grant = self.grants[&grant_id].clone();
        let access = random_token(48);
        self.access_tokens.insert(
            access.clone(),
            AccessToken {
                grant_id,
                expires_at: Instant::now() + lifetime,
                invalidated: already_expired,
            },
        );
        let refresh = grant.scopes.iter().any(|s| s == "offline.access").then(|| {
            let refresh = random_token(48);
            self.refresh_tokens.insert(
                refresh.clone(),
                RefreshToken {
                    grant_id,
                    used: false,
                },
            );
            refresh
        });
        self.tokens_issued.push(XIssuedTokens {
            access_token: access.clone(),
            refresh_token: refresh.clone(),
            user_id: grant.user_id,
            scope: grant.scopes.join(" "),
        });
        (access, refresh)
    }

    pub fn new_grant(&mut self, user_id: String, client_id: String, scopes: Vec<String>) -> u64 {
        self.next_grant += 1;
        self.grants.insert(
            self.next_grant,
            Grant {
                user_id,
                client_id,
                scopes,
                revoked: false,
            },
        );
        self.next_grant
    }

    /// Invalidates every access token of `grant_id` (after rotation or revocation).
    pub fn invalidate_access_tokens(&mut self, grant_id: u64) {
        for t in self.access_tokens.values_mut() {
            if t.grant_id == grant_id {
                t.invalidated = true;
            }
        }
    }

    /// Revokes the grant and every token in it.
    pub fn revoke_grant(&mut self, grant_id: u64) {
        if let Some(g) = self.grants.get_mut(&grant_id) {
            g.revoked = true;
        }
        self.invalidate_access_tokens(grant_id);
        for t in self.refresh_tokens.values_mut() {
            if t.grant_id == grant_id {
                t.used = true;
            }
        }
    }

    /// The account for `username`, created with a deterministic id if new.
    pub fn user_by_username(&mut self, username: &str) -> User {
        if let Some(u) = self
            .users
            .values()
            .find(|u| u.username.eq_ignore_ascii_case(username))
        {
            return u.clone();
        }
        let digest = Sha256::digest(username.to_ascii_lowercase().as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        // 19 digits, away from the default account's id.
        let id = 1_600_000_000_000_000_000 + u64::from_be_bytes(first) % 300_000_000_000_000_000;
        let user = User {
            id: id.to_string(),
            username: username.to_owned(),
            name: username.to_owned(),
        };
        self.users.insert(user.id.clone(), user.clone());
        user
    }
}

/// Shared, lock-protected state of the X twin.
pub(crate) struct XState {
    pub config: XConfig,
    inner: TwinLock<XInner>,
}

impl XState {
    pub fn new(config: XConfig) -> Self {
        let default_user = User {
            id: DEFAULT_USER_ID.to_owned(),
            username: DEFAULT_USERNAME.to_owned(),
            name: DEFAULT_NAME.to_owned(),
        };
        let inner = XInner {
            last_id: 0,
            next_grant: 0,
            users: HashMap::from([(default_user.id.clone(), default_user)]),
            auth_codes: HashMap::new(),
            grants: HashMap::new(),
            access_tokens: HashMap::new(),
            refresh_tokens: HashMap::new(),
            tokens_issued: Vec::new(),
            media: BTreeMap::new(),
            posts: Vec::new(),
            post_index: HashMap::new(),
            texts: HashSet::new(),
            rate: RateLimiter::default(),
            faults: FaultQueue::new(XEndpoint::Any),
            log: RequestLog::default(),
        };
        Self {
            config,
            inner: TwinLock::new(inner),
        }
    }

    /// The lock; never held across an await. A panic in another handler must
    /// not take the whole twin down, hence the poison recovery.
    /// The twin's state for one step of a request. Helpers take the guard's `&Inner`, never
    /// `&self`, so nothing under it locks again (see [`crate::lock`]).
    pub fn lock(&self) -> TwinGuard<'_, XInner> {
        self.inner.lock()
    }

    /// The caller behind a bearer token, if it is live.
    pub fn authenticate(&self, token: &str) -> Option<Caller> {
        let inner = self.lock();
        let t = inner.access_tokens.get(token)?;
        if t.invalidated || Instant::now() >= t.expires_at {
            return None;
        }
        let grant = inner.grants.get(&t.grant_id).filter(|g| !g.revoked)?;
        Some(Caller {
            user_id: grant.user_id.clone(),
            access_token: token.to_owned(),
            grant_id: t.grant_id,
            scopes: grant.scopes.clone(),
        })
    }

    pub fn expire_access_token(&self, token: &str) {
        if let Some(t) = self.lock().access_tokens.get_mut(token) {
            t.invalidated = true;
        }
    }

    pub fn revoke_grant(&self, grant_id: u64) {
        self.lock().revoke_grant(grant_id);
    }

    pub fn rate_hit(&self, user_id: &str, endpoint: XEndpoint, limit: u32) -> RateStatus {
        let window = self.config.rate_limit_window.as_secs().max(1) as i64;
        self.lock().rate.hit(
            (user_id.to_owned(), endpoint),
            limit,
            window,
            crate::epoch_now(),
        )
    }
}

fn post_snapshot(p: &Post) -> XPostSnapshot {
    XPostSnapshot {
        id: p.id.to_string(),
        author_id: p.author_id.clone(),
        text: p.text.clone(),
        media_ids: p.media_ids.iter().map(u64::to_string).collect(),
        poll: p.poll.clone(),
        in_reply_to_tweet_id: p.in_reply_to.map(|i| i.to_string()),
        quote_tweet_id: p.quote_of.map(|i| i.to_string()),
        created_at: p
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }
}

impl Twin for XState {
    type Inner = XInner;
    type Endpoint = XEndpoint;
    type Snapshot = XStateSnapshot;

    fn state_lock(&self) -> &TwinLock<XInner> {
        &self.inner
    }

    fn faults(inner: &mut XInner) -> &mut FaultQueue<XEndpoint> {
        &mut inner.faults
    }

    fn requests(inner: &mut XInner) -> &mut RequestLog {
        &mut inner.log
    }

    fn snapshot(&self) -> XStateSnapshot {
        let inner = self.lock();
        let now = Instant::now();
        XStateSnapshot {
            posts: inner.posts.iter().map(post_snapshot).collect(),
            media: inner
                .media
                .values()
                .map(|m| XMediaSnapshot {
                    id: m.id.to_string(),
                    media_key: m.media_key.clone(),
                    owner_id: m.owner.clone(),
                    media_type: m.media_type.clone(),
                    media_category: m.category.clone(),
                    total_bytes: m.total_bytes,
                    bytes_received: m.bytes_received(),
                    segments: m.segments.keys().copied().collect(),
                    state: m
                        .proc_state(now)
                        .map_or("uploading", ProcState::name)
                        .to_owned(),
                })
                .collect(),
            tokens_issued: inner.tokens_issued.clone(),
            requests: inner.log.records(),
        }
    }
}
