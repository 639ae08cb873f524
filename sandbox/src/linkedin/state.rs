//! The LinkedIn twin's shared state: members, organisations, OAuth artefacts, media, posts.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{
    LinkedInConfig, LinkedInEndpoint, LinkedInIssuedToken, LinkedInMediaSnapshot,
    LinkedInPostSnapshot, LinkedInStateSnapshot, TokenProblem,
};
use crate::faults::FaultQueue;
use crate::inspect::RequestLog;
use crate::lock::{TwinGuard, TwinLock};
use crate::oauth::random_token;
use crate::twin::Twin;

/// First numeric id of posts and media (LinkedIn activity ids are 19 digits).
const FIRST_ID: u64 = 7_300_000_000_000_000_001;

#[derive(Debug, Clone)]
pub(crate) struct Member {
    /// The `sub` / person id, e.g. `aB3dE5fG7h`.
    pub id: String,
    pub username: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub(crate) struct AuthCode {
    pub redirect_uri: String,
    pub member_id: String,
    pub scopes: Vec<String>,
    pub expires_at: Instant,
}

#[derive(Debug, Clone)]
pub(crate) struct AccessToken {
    pub member_id: String,
    pub scopes: Vec<String>,
    pub expires_at: Instant,
    /// Set when a fault or a revocation ended the token early.
    pub problem: Option<TokenProblem>,
}

#[derive(Debug, Clone)]
pub(crate) struct RefreshToken {
    pub member_id: String,
    pub scopes: Vec<String>,
    /// Fixed at the first authorization: refreshing does not extend it.
    pub expires_at: Instant,
    pub revoked: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub first: u64,
    pub last: u64,
    pub key: String,
    pub etag: Option<String>,
}

/// Which LinkedIn asset API a media item belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MediaType {
    Image,
    Video,
    Document,
}

impl MediaType {
    /// The URN prefix LinkedIn gives this kind of asset.
    pub fn urn_prefix(self) -> &'static str {
        match self {
            MediaType::Image => "urn:li:image:",
            MediaType::Video => "urn:li:video:",
            MediaType::Document => "urn:li:document:",
        }
    }
}

/// An image, video or document being uploaded or ready for posts.
#[derive(Debug, Clone)]
pub(crate) struct Media {
    pub urn: String,
    pub owner: String,
    pub kind: MediaType,
    /// Declared size (videos) or received size (images).
    pub bytes: u64,
    pub parts: Vec<Part>,
    pub upload_token: String,
    pub finalized: bool,
    /// When processing ends (set once the upload is complete).
    pub ready_at: Option<Instant>,
    /// Extra processing time from a `slow_processing` fault.
    pub processing: Duration,
    pub failed: bool,
}

impl Media {
    pub fn status(&self, now: Instant) -> &'static str {
        let unfinished = self.kind == MediaType::Video && !self.finalized;
        if self.parts.iter().any(|p| p.etag.is_none()) || unfinished {
            return "WAITING_UPLOAD";
        }
        match self.ready_at {
            Some(at) if now < at => "PROCESSING",
            _ if self.failed => "PROCESSING_FAILED",
            _ => "AVAILABLE",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Post {
    pub urn: String,
    pub author: String,
    pub created_by: String,
    pub commentary: String,
    pub text: String,
    pub truncated: bool,
    pub visibility: String,
    pub lifecycle_state: String,
    pub content_kind: String,
    pub media: Vec<String>,
    pub content_title: Option<String>,
    pub article_url: Option<String>,
    pub linkedin_version: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The request's `content` and `distribution`, echoed when the post is read.
    pub content: serde_json::Value,
    pub distribution: serde_json::Value,
}

/// The caller of an API request.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub member_id: String,
    pub token: String,
    pub scopes: Vec<String>,
}

impl Caller {
    pub fn urn(&self) -> String {
        format!("urn:li:person:{}", self.member_id)
    }

    pub fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    next_id: u64,
    pub members: HashMap<String, Member>,
    pub codes: HashMap<String, AuthCode>,
    pub access_tokens: HashMap<String, AccessToken>,
    pub refresh_tokens: HashMap<String, RefreshToken>,
    pub issued: Vec<LinkedInIssuedToken>,
    pub media: HashMap<String, Media>,
    pub media_order: Vec<String>,
    /// Upload key → (media URN, part index).
    pub uploads: HashMap<String, (String, usize)>,
    pub posts: Vec<Post>,
    pub faults: FaultQueue<LinkedInEndpoint>,
    pub requests: RequestLog,
    /// Calls per key (`app` or a member id) on the UTC day they were counted.
    pub calls: HashMap<String, (chrono::NaiveDate, u32)>,
}

impl Inner {
    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The member for `username`, created on first use with a stable id.
    pub fn member_by_username(&mut self, username: &str) -> Member {
        if let Some(m) = self.members.values().find(|m| m.username == username) {
            return m.clone();
        }
        let member = Member {
            id: person_id(username),
            username: username.to_owned(),
            name: if username == super::DEFAULT_USERNAME {
                "Herald Sandbox".to_owned()
            } else {
                username.to_owned()
            },
        };
        self.members.insert(member.id.clone(), member.clone());
        member
    }

    /// Posts `member_id` made today (UTC).
    pub fn posts_today(&self, member_id: &str) -> usize {
        let today = chrono::Utc::now().date_naive();
        self.posts
            .iter()
            .filter(|p| p.created_by == member_id && p.created_at.date_naive() == today)
            .count()
    }

    /// The roles `member_id` holds, as `(organisation id, role)`.
    pub fn roles_of(&self, config: &LinkedInConfig, member_id: &str) -> Vec<(u64, String)> {
        let username = self
            .members
            .get(member_id)
            .map(|m| m.username.as_str())
            .unwrap_or_default();
        config
            .organizations
            .iter()
            .flat_map(|o| {
                o.roles
                    .iter()
                    .filter(|(u, _)| *u == username)
                    .map(move |(_, role)| (o.id, role.clone()))
            })
            .collect()
    }

    /// Whether the caller may act as `author` (their own person URN, or an organisation where
    /// they hold a posting role and the token has `w_organization_social`).
    pub fn may_act_as(&self, config: &LinkedInConfig, caller: &Caller, author: &str) -> bool {
        if author == caller.urn() {
            return caller.has("w_member_social");
        }
        let Some(org) = author
            .strip_prefix("urn:li:organization:")
            .and_then(|id| id.parse::<u64>().ok())
        else {
            return false;
        };
        caller.has("w_organization_social")
            && self
                .roles_of(config, &caller.member_id)
                .iter()
                .any(|(id, role)| *id == org && super::POSTING_ROLES.contains(&role.as_str()))
    }

    /// Whether the caller may read `author`'s posts and media: their own, or an organisation's
    /// where they hold any role.
    pub fn may_read(&self, config: &LinkedInConfig, caller: &Caller, author: &str) -> bool {
        if author == caller.urn() {
            return true;
        }
        author
            .strip_prefix("urn:li:organization:")
            .and_then(|id| id.parse::<u64>().ok())
            .is_some_and(|org| {
                self.roles_of(config, &caller.member_id)
                    .iter()
                    .any(|(id, _)| *id == org)
            })
    }
}

/// A stable LinkedIn-looking person id (10 alphanumerics) for `username`.
fn person_id(username: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    Sha256::digest(username.as_bytes())
        .iter()
        .take(10)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// The LinkedIn twin's state, shared by all server workers.
#[derive(Debug)]
pub(crate) struct LinkedInState {
    pub config: LinkedInConfig,
    inner: TwinLock<Inner>,
}

impl LinkedInState {
    pub fn new(config: LinkedInConfig) -> Self {
        Self {
            config,
            inner: TwinLock::new(Inner {
                next_id: FIRST_ID,
                members: HashMap::new(),
                codes: HashMap::new(),
                access_tokens: HashMap::new(),
                refresh_tokens: HashMap::new(),
                issued: Vec::new(),
                media: HashMap::new(),
                media_order: Vec::new(),
                uploads: HashMap::new(),
                posts: Vec::new(),
                faults: FaultQueue::new(LinkedInEndpoint::Any),
                requests: RequestLog::default(),
                calls: HashMap::new(),
            }),
        }
    }

    /// The twin's state for one step of a request. Helpers take the guard's `&Inner`, never
    /// `&self`, so nothing under it locks again (see [`crate::lock`]).
    pub fn lock(&self) -> TwinGuard<'_, Inner> {
        self.inner.lock()
    }

    /// Issues an access token (and, for MDP apps, a refresh token; `refresh` keeps an existing
    /// one). Returns `(access, refresh, refresh seconds left)`.
    pub fn issue(
        &self,
        member_id: &str,
        scopes: Vec<String>,
        refresh: Option<String>,
    ) -> (String, Option<String>, Option<u64>) {
        let now = Instant::now();
        let mut inner = self.lock();
        let access = format!("AQ{}", random_token(48));
        inner.access_tokens.insert(
            access.clone(),
            AccessToken {
                member_id: member_id.to_owned(),
                scopes: scopes.clone(),
                expires_at: now + self.config.access_token_lifetime,
                problem: None,
            },
        );
        let refresh = match refresh {
            Some(r) => Some(r),
            None if self.config.refresh_tokens => {
                let r = format!("AQX{}", random_token(48));
                inner.refresh_tokens.insert(
                    r.clone(),
                    RefreshToken {
                        member_id: member_id.to_owned(),
                        scopes,
                        expires_at: now + self.config.refresh_token_lifetime,
                        revoked: false,
                    },
                );
                Some(r)
            }
            None => None,
        };
        let left = refresh.as_ref().and_then(|r| {
            inner
                .refresh_tokens
                .get(r)
                .map(|t| t.expires_at.saturating_duration_since(now).as_secs())
        });
        inner.issued.push(LinkedInIssuedToken {
            access_token: access.clone(),
            refresh_token: refresh.clone(),
            member: format!("urn:li:person:{member_id}"),
        });
        (access, refresh, left)
    }

    /// The caller of a valid access token, or why it is refused.
    pub fn authenticate(&self, token: &str) -> Result<Caller, TokenProblem> {
        let inner = self.lock();
        let t = inner
            .access_tokens
            .get(token)
            .ok_or(TokenProblem::Invalid)?;
        if let Some(problem) = t.problem {
            return Err(problem);
        }
        if Instant::now() >= t.expires_at {
            return Err(TokenProblem::Expired);
        }
        Ok(Caller {
            member_id: t.member_id.clone(),
            token: token.to_owned(),
            scopes: t.scopes.clone(),
        })
    }

    pub fn invalidate_token(&self, token: &str, problem: TokenProblem) {
        if let Some(t) = self.lock().access_tokens.get_mut(token) {
            t.problem = Some(problem);
        }
    }

    /// Revokes every access and refresh token of the member (the member removed the app).
    pub fn revoke_member(&self, member_id: &str) {
        let mut inner = self.lock();
        for t in inner.access_tokens.values_mut() {
            if t.member_id == member_id {
                t.problem = Some(TokenProblem::Revoked);
            }
        }
        for t in inner.refresh_tokens.values_mut() {
            if t.member_id == member_id {
                t.revoked = true;
            }
        }
    }

    /// Counts one API call against the app's and the member's daily limits. `Some(kind)` when
    /// a limit is exhausted (`APPLICATION` or `MEMBER`); a refused call is not counted.
    pub fn count_call(&self, member_id: &str) -> Option<&'static str> {
        let today = chrono::Utc::now().date_naive();
        let mut inner = self.lock();
        let used = |inner: &Inner, key: &str| match inner.calls.get(key) {
            Some((day, n)) if *day == today => *n,
            _ => 0,
        };
        if used(&inner, "app") >= self.config.app_calls_per_day {
            return Some("APPLICATION");
        }
        if used(&inner, member_id) >= self.config.member_calls_per_day {
            return Some("MEMBER");
        }
        for key in ["app", member_id] {
            let entry = inner.calls.entry(key.to_owned()).or_insert((today, 0));
            if entry.0 != today {
                *entry = (today, 0);
            }
            entry.1 += 1;
        }
        None
    }
}

impl Twin for LinkedInState {
    type Inner = Inner;
    type Endpoint = LinkedInEndpoint;
    type Snapshot = LinkedInStateSnapshot;

    fn state_lock(&self) -> &TwinLock<Inner> {
        &self.inner
    }

    fn faults(inner: &mut Inner) -> &mut FaultQueue<LinkedInEndpoint> {
        &mut inner.faults
    }

    fn requests(inner: &mut Inner) -> &mut RequestLog {
        &mut inner.requests
    }

    fn snapshot(&self) -> LinkedInStateSnapshot {
        let inner = self.lock();
        let now = Instant::now();
        let media = |kind: MediaType| {
            inner
                .media_order
                .iter()
                .filter_map(|urn| inner.media.get(urn))
                .filter(|m| m.kind == kind)
                .map(|m| LinkedInMediaSnapshot {
                    urn: m.urn.clone(),
                    owner: m.owner.clone(),
                    status: m.status(now).to_owned(),
                    bytes: m.bytes,
                    parts: m.parts.len(),
                    parts_uploaded: m.parts.iter().filter(|p| p.etag.is_some()).count(),
                })
                .collect()
        };
        LinkedInStateSnapshot {
            posts: inner
                .posts
                .iter()
                .map(|p| LinkedInPostSnapshot {
                    urn: p.urn.clone(),
                    author: p.author.clone(),
                    created_by: format!("urn:li:person:{}", p.created_by),
                    commentary: p.commentary.clone(),
                    text: p.text.clone(),
                    truncated: p.truncated,
                    visibility: p.visibility.clone(),
                    lifecycle_state: p.lifecycle_state.clone(),
                    content_kind: p.content_kind.clone(),
                    media: p.media.clone(),
                    content_title: p.content_title.clone(),
                    article_url: p.article_url.clone(),
                    poll: p.content.get("poll").cloned(),
                    linkedin_version: p.linkedin_version.clone(),
                    created_at: p.created_at.timestamp_millis(),
                })
                .collect(),
            images: media(MediaType::Image),
            videos: media(MediaType::Video),
            documents: media(MediaType::Document),
            tokens_issued: inner.issued.clone(),
            requests: inner.requests.records(),
        }
    }
}
