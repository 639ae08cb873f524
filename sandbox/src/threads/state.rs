//! The Threads twin's shared state: accounts, OAuth artefacts, containers, posts, faults.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{
    ThreadsConfig, ThreadsContainerSnapshot, ThreadsEndpoint, ThreadsIssuedToken,
    ThreadsPostSnapshot, ThreadsStateSnapshot, DEFAULT_NAME, DEFAULT_USERNAME,
};
use crate::faults::FaultQueue;
use crate::inspect::RequestLog;
use crate::lock::{TwinGuard, TwinLock};
use crate::oauth::random_token;
use crate::twin::Twin;

/// First user id handed out; Threads user ids are 17-digit numbers.
const FIRST_USER_ID: u64 = 17_841_400_000_000_001;
/// First container / media id.
const FIRST_MEDIA_ID: u64 = 18_000_000_000_000_001;

#[derive(Debug, Clone)]
pub(crate) struct User {
    pub id: String,
    pub username: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub(crate) struct AuthCode {
    pub redirect_uri: String,
    pub user_id: String,
    pub scopes: Vec<String>,
    pub expires_at: Instant,
}

/// An access token: short-lived (from the code) or long-lived (exchanged or refreshed).
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub user_id: String,
    pub scopes: Vec<String>,
    pub long_lived: bool,
    pub issued_at: Instant,
    pub expires_at: Instant,
    /// Expired or revoked by a fault.
    pub invalidated: bool,
}

/// A media container, created by `POST /{user-id}/threads`.
#[derive(Debug, Clone)]
pub(crate) struct Container {
    pub id: String,
    pub owner_id: String,
    pub media_type: String,
    pub text: Option<String>,
    pub image_url: Option<String>,
    pub video_url: Option<String>,
    pub children: Vec<String>,
    pub is_carousel_item: bool,
    pub reply_to_id: Option<String>,
    pub ready_at: Instant,
    pub error_message: Option<String>,
    /// The media id once published; a container publishes once.
    pub published_id: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Post {
    pub id: String,
    pub owner_id: String,
    pub username: String,
    pub container_id: String,
    pub media_type: String,
    pub text: String,
    pub media_urls: Vec<String>,
    pub reply_to_id: Option<String>,
    pub timestamp: chrono::DateTime<chrono::Utc>,
}

impl Post {
    pub fn permalink(&self) -> String {
        format!(
            "https://www.threads.net/@{}/post/{}",
            self.username, self.id
        )
    }
}

/// The caller of an API request.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub user_id: String,
    pub token: String,
    pub scopes: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    next_user: u64,
    next_media: u64,
    pub users: HashMap<String, User>,
    pub codes: HashMap<String, AuthCode>,
    pub tokens: HashMap<String, Token>,
    pub issued: Vec<ThreadsIssuedToken>,
    pub containers: HashMap<String, Container>,
    pub container_order: Vec<String>,
    pub posts: Vec<Post>,
    pub faults: FaultQueue<ThreadsEndpoint>,
    pub requests: RequestLog,
    /// API calls per user, for `X-App-Usage`.
    pub calls: HashMap<String, u64>,
    /// `threads_publish` calls refused because the publishing quota was used up.
    pub quota_refusals: u64,
    /// `threads_publish` calls of replies refused because the reply quota was used up.
    pub reply_quota_refusals: u64,
}

impl Inner {
    pub fn next_media_id(&mut self) -> String {
        let id = self.next_media;
        self.next_media += 1;
        id.to_string()
    }

    pub fn user_by_username(&mut self, username: &str) -> User {
        if let Some(user) = self.users.values().find(|u| u.username == username) {
            return user.clone();
        }
        let id = self.next_user.to_string();
        self.next_user += 1;
        let user = User {
            id: id.clone(),
            username: username.to_owned(),
            name: if username == DEFAULT_USERNAME {
                DEFAULT_NAME.to_owned()
            } else {
                username.to_owned()
            },
        };
        self.users.insert(id, user.clone());
        user
    }

    pub fn issue_token(
        &mut self,
        user_id: &str,
        scopes: Vec<String>,
        long_lived: bool,
        lifetime: Duration,
    ) -> String {
        let token = format!("TH{}", random_token(32));
        let now = Instant::now();
        self.tokens.insert(
            token.clone(),
            Token {
                user_id: user_id.to_owned(),
                scopes,
                long_lived,
                issued_at: now,
                expires_at: now + lifetime,
                invalidated: false,
            },
        );
        self.issued.push(ThreadsIssuedToken {
            access_token: token.clone(),
            user_id: user_id.to_owned(),
            long_lived,
        });
        token
    }

    /// The post that starts the conversation `post_id` is in (the post itself when it is no
    /// reply), if `post_id` is a post.
    pub fn root_of(&self, post_id: &str) -> Option<&Post> {
        let mut post = self.posts.iter().find(|p| p.id == post_id)?;
        // A reply answers an earlier post, so the walk ends.
        while let Some(parent) = &post.reply_to_id {
            post = self.posts.iter().find(|p| &p.id == parent)?;
        }
        Some(post)
    }

    /// Whether the container is ready, in error or still processing.
    pub fn status(&self, container: &Container, now: Instant) -> &'static str {
        if container.published_id.is_some() {
            return "PUBLISHED";
        }
        if now < container.ready_at {
            return "IN_PROGRESS";
        }
        if container.error_message.is_some() {
            return "ERROR";
        }
        for child in &container.children {
            match self.containers.get(child).map(|c| self.status(c, now)) {
                Some("FINISHED") | Some("PUBLISHED") => {}
                Some("ERROR") | None => return "ERROR",
                _ => return "IN_PROGRESS",
            }
        }
        "FINISHED"
    }
}

/// The Threads twin's state, shared by all server workers.
#[derive(Debug)]
pub(crate) struct ThreadsState {
    pub config: ThreadsConfig,
    inner: TwinLock<Inner>,
}

impl ThreadsState {
    pub fn new(config: ThreadsConfig) -> Self {
        Self {
            config,
            inner: TwinLock::new(Inner {
                next_user: FIRST_USER_ID,
                next_media: FIRST_MEDIA_ID,
                users: HashMap::new(),
                codes: HashMap::new(),
                tokens: HashMap::new(),
                issued: Vec::new(),
                containers: HashMap::new(),
                container_order: Vec::new(),
                posts: Vec::new(),
                faults: FaultQueue::new(ThreadsEndpoint::Any),
                requests: RequestLog::default(),
                calls: HashMap::new(),
                quota_refusals: 0,
                reply_quota_refusals: 0,
            }),
        }
    }

    /// The twin's state for one step of a request. Helpers take the guard's `&Inner`, never
    /// `&self`, so nothing under it locks again (see [`crate::lock`]).
    pub fn lock(&self) -> TwinGuard<'_, Inner> {
        self.inner.lock()
    }

    /// The caller of a valid, unexpired token.
    pub fn authenticate(&self, token: &str) -> Option<Caller> {
        let inner = self.lock();
        let t = inner.tokens.get(token)?;
        (!t.invalidated && Instant::now() < t.expires_at).then(|| Caller {
            user_id: t.user_id.clone(),
            token: token.to_owned(),
            scopes: t.scopes.clone(),
        })
    }

    pub fn invalidate_token(&self, token: &str) {
        if let Some(t) = self.lock().tokens.get_mut(token) {
            t.invalidated = true;
        }
    }

    /// Invalidates every token of the user (the grant is gone).
    pub fn revoke_user(&self, user_id: &str) {
        for t in self.lock().tokens.values_mut() {
            if t.user_id == user_id {
                t.invalidated = true;
            }
        }
    }

    /// Counts one call; returns the user's usage in percent of the call budget.
    pub fn count_call(&self, user_id: &str) -> u64 {
        let mut inner = self.lock();
        let calls = inner.calls.entry(user_id.to_owned()).or_default();
        *calls += 1;
        (*calls * 100) / self.config.call_budget.max(1)
    }
}

impl Twin for ThreadsState {
    type Inner = Inner;
    type Endpoint = ThreadsEndpoint;
    type Snapshot = ThreadsStateSnapshot;

    fn state_lock(&self) -> &TwinLock<Inner> {
        &self.inner
    }

    fn faults(inner: &mut Inner) -> &mut FaultQueue<ThreadsEndpoint> {
        &mut inner.faults
    }

    fn requests(inner: &mut Inner) -> &mut RequestLog {
        &mut inner.requests
    }

    fn snapshot(&self) -> ThreadsStateSnapshot {
        let inner = self.lock();
        let now = Instant::now();
        ThreadsStateSnapshot {
            posts: inner
                .posts
                .iter()
                .map(|p| ThreadsPostSnapshot {
                    id: p.id.clone(),
                    owner_id: p.owner_id.clone(),
                    container_id: p.container_id.clone(),
                    media_type: p.media_type.clone(),
                    text: p.text.clone(),
                    media_urls: p.media_urls.clone(),
                    reply_to_id: p.reply_to_id.clone(),
                    permalink: p.permalink(),
                    timestamp: p.timestamp.to_rfc3339(),
                })
                .collect(),
            containers: inner
                .container_order
                .iter()
                .filter_map(|id| inner.containers.get(id))
                .map(|c| ThreadsContainerSnapshot {
                    id: c.id.clone(),
                    owner_id: c.owner_id.clone(),
                    media_type: c.media_type.clone(),
                    text: c.text.clone(),
                    image_url: c.image_url.clone(),
                    video_url: c.video_url.clone(),
                    children: c.children.clone(),
                    is_carousel_item: c.is_carousel_item,
                    status: inner.status(c, now).to_owned(),
                })
                .collect(),
            tokens_issued: inner.issued.clone(),
            quota_refusals: inner.quota_refusals,
            reply_quota_refusals: inner.reply_quota_refusals,
            requests: inner.requests.records(),
        }
    }
}
