//! The Reddit twin's shared state: users, OAuth artefacts, media leases, posts, rate windows.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{
    RedditAssetSnapshot, RedditConfig, RedditEndpoint, RedditIssuedToken, RedditPostSnapshot,
    RedditStateSnapshot, RedditSubreddit,
};
use crate::faults::FaultQueue;
use crate::inspect::RequestLog;
use crate::lock::{TwinGuard, TwinLock};
use crate::oauth::random_token;
use crate::ratelimit::{RateLimiter, RateStatus};
use crate::twin::Twin;

/// First post id (base 36 `1a2b3c`-like ids grow from here).
const FIRST_POST: u64 = 60_000_000;
/// User-Agents kept for inspection.
const MAX_AGENTS: usize = 1000;

#[derive(Debug, Clone)]
pub(crate) struct User {
    /// Base-36 account id (the fullname is `t2_{id}`).
    pub id: String,
    pub name: String,
    pub created_utc: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct AuthCode {
    pub redirect_uri: String,
    pub username: String,
    pub scopes: Vec<String>,
    pub permanent: bool,
    pub expires_at: Instant,
}

#[derive(Debug, Clone)]
pub(crate) struct AccessToken {
    pub username: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub expires_at: Instant,
    pub invalidated: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct RefreshToken {
    pub username: String,
    pub scopes: Vec<String>,
    pub revoked: bool,
}

/// A media upload lease from `asset.json`.
#[derive(Debug, Clone)]
pub(crate) struct Asset {
    pub asset_id: String,
    pub owner: String,
    pub key: String,
    pub mimetype: String,
    pub policy: String,
    pub signature: String,
    pub bytes: Option<u64>,
    /// The URL the upload answered with (what a submit must point at).
    pub location: Option<String>,
    /// `reject_media`: the S3 target refuses the file.
    pub reject: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Post {
    pub id: String,
    pub author: String,
    pub subreddit: String,
    pub kind: String,
    pub title: String,
    pub text: String,
    pub url: Option<String>,
    pub flair_id: Option<String>,
    pub flair_text: Option<String>,
    pub nsfw: bool,
    pub spoiler: bool,
    pub created: chrono::DateTime<chrono::Utc>,
    /// Image and video posts appear in listings only once processed.
    pub visible_at: Instant,
    /// A gallery's items, in order.
    pub gallery: Vec<GalleryItem>,
    /// A video's asset id and poster URL.
    pub video: Option<(String, String)>,
}

/// One image of a gallery.
#[derive(Debug, Clone)]
pub(crate) struct GalleryItem {
    pub media_id: String,
    pub mimetype: String,
    pub caption: String,
    pub outbound_url: String,
}

impl Post {
    pub fn permalink(&self) -> String {
        let slug: String = self
            .title
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect::<String>()
            .split('_')
            .filter(|s| !s.is_empty())
            .take(8)
            .collect::<Vec<_>>()
            .join("_");
        format!("/r/{}/comments/{}/{slug}/", self.subreddit, self.id)
    }
}

/// The caller of an API request.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub username: String,
    pub client_id: String,
    pub token: String,
    pub scopes: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    next_post: u64,
    pub users: HashMap<String, User>,
    pub codes: HashMap<String, AuthCode>,
    pub access_tokens: HashMap<String, AccessToken>,
    pub refresh_tokens: HashMap<String, RefreshToken>,
    pub issued: Vec<RedditIssuedToken>,
    pub assets: Vec<Asset>,
    pub posts: Vec<Post>,
    pub faults: FaultQueue<RedditEndpoint>,
    pub requests: RequestLog,
    pub user_agents: Vec<String>,
    /// Calls per client id (Reddit's limit since July 2023).
    pub windows: RateLimiter<String>,
    /// Submissions per user, for the in-body `RATELIMIT`.
    pub submits: HashMap<String, Vec<Instant>>,
}

impl Inner {
    pub fn next_post_id(&mut self) -> String {
        let id = base36(self.next_post);
        self.next_post += 1;
        id
    }

    pub fn user(&mut self, name: &str) -> User {
        if let Some(user) = self.users.get(name) {
            return user.clone();
        }
        let hash = Sha256::digest(name.as_bytes());
        let n = u64::from_be_bytes(hash[..8].try_into().unwrap_or_default()) % 2_000_000_000;
        let user = User {
            id: base36(n + 1_000_000),
            name: name.to_owned(),
            created_utc: 1_600_000_000,
        };
        self.users.insert(name.to_owned(), user.clone());
        user
    }
}

pub(crate) fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// The Reddit twin's state, shared by all server workers.
#[derive(Debug)]
pub(crate) struct RedditState {
    pub config: RedditConfig,
    inner: TwinLock<Inner>,
}

impl RedditState {
    pub fn new(config: RedditConfig) -> Self {
        Self {
            config,
            inner: TwinLock::new(Inner {
                next_post: FIRST_POST,
                users: HashMap::new(),
                codes: HashMap::new(),
                access_tokens: HashMap::new(),
                refresh_tokens: HashMap::new(),
                issued: Vec::new(),
                assets: Vec::new(),
                posts: Vec::new(),
                faults: FaultQueue::new(RedditEndpoint::Any),
                requests: RequestLog::default(),
                user_agents: Vec::new(),
                windows: RateLimiter::default(),
                submits: HashMap::new(),
            }),
        }
    }

    /// The twin's state for one step of a request. Helpers take the guard's `&Inner`, never
    /// `&self`, so nothing under it locks again (see [`crate::lock`]).
    pub fn lock(&self) -> TwinGuard<'_, Inner> {
        self.inner.lock()
    }

    pub fn subreddit(&self, name: &str) -> Option<&RedditSubreddit> {
        self.config
            .subreddits
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
    }

    /// Issues an access token, plus a refresh token for a permanent grant.
    pub fn issue(
        &self,
        username: &str,
        scopes: Vec<String>,
        permanent: bool,
    ) -> (String, Option<String>) {
        let mut inner = self.lock();
        let access = format!("{}-{}", random_token(6), random_token(24));
        inner.access_tokens.insert(
            access.clone(),
            AccessToken {
                username: username.to_owned(),
                client_id: self.config.client_id.clone(),
                scopes: scopes.clone(),
                expires_at: Instant::now() + self.config.access_token_lifetime,
                invalidated: false,
            },
        );
        let refresh = permanent.then(|| {
            let token = format!("{}-{}", random_token(6), random_token(30));
            inner.refresh_tokens.insert(
                token.clone(),
                RefreshToken {
                    username: username.to_owned(),
                    scopes,
                    revoked: false,
                },
            );
            token
        });
        inner.issued.push(RedditIssuedToken {
            access_token: access.clone(),
            refresh_token: refresh.clone(),
            username: username.to_owned(),
        });
        (access, refresh)
    }

    /// An access token from a refresh token; the refresh token does not rotate.
    pub fn refresh(&self, refresh: &str) -> Option<(String, Vec<String>)> {
        let stored = self.lock().refresh_tokens.get(refresh).cloned()?;
        if stored.revoked {
            return None;
        }
        let mut inner = self.lock();
        let access = format!("{}-{}", random_token(6), random_token(24));
        inner.access_tokens.insert(
            access.clone(),
            AccessToken {
                username: stored.username.clone(),
                client_id: self.config.client_id.clone(),
                scopes: stored.scopes.clone(),
                expires_at: Instant::now() + self.config.access_token_lifetime,
                invalidated: false,
            },
        );
        inner.issued.push(RedditIssuedToken {
            access_token: access.clone(),
            refresh_token: None,
            username: stored.username,
        });
        Some((access, stored.scopes))
    }

    pub fn authenticate(&self, token: &str) -> Option<Caller> {
        let inner = self.lock();
        let t = inner.access_tokens.get(token)?;
        (!t.invalidated && Instant::now() < t.expires_at).then(|| Caller {
            username: t.username.clone(),
            client_id: t.client_id.clone(),
            token: token.to_owned(),
            scopes: t.scopes.clone(),
        })
    }

    pub fn invalidate_token(&self, token: &str) {
        if let Some(t) = self.lock().access_tokens.get_mut(token) {
            t.invalidated = true;
        }
    }

    /// Revokes every token of the user (the user removed the app).
    pub fn revoke_user(&self, username: &str) {
        let mut inner = self.lock();
        for t in inner.access_tokens.values_mut() {
            if t.username == username {
                t.invalidated = true;
            }
        }
        for t in inner.refresh_tokens.values_mut() {
            if t.username == username {
                t.revoked = true;
            }
        }
    }

    /// Revokes one token; a refresh token takes its access tokens with it.
    pub fn revoke_token(&self, token: &str) {
        let mut inner = self.lock();
        if let Some(t) = inner.access_tokens.get_mut(token) {
            t.invalidated = true;
            return;
        }
        let Some(user) = inner.refresh_tokens.get_mut(token).map(|t| {
            t.revoked = true;
            t.username.clone()
        }) else {
            return;
        };
        for t in inner.access_tokens.values_mut() {
            if t.username == user {
                t.invalidated = true;
            }
        }
    }

    pub fn count_call(&self, client_id: &str) -> RateStatus {
        let window = self.config.rate_limit_window.as_secs() as i64;
        self.lock().windows.hit(
            client_id.to_owned(),
            self.config.requests_per_window,
            window,
            crate::epoch_now(),
        )
    }

    /// Counts a submission; `Err(wait)` when the user must wait before submitting again.
    pub fn count_submit(&self, username: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let window = self.config.submit_window;
        let mut inner = self.lock();
        let times = inner.submits.entry(username.to_owned()).or_default();
        times.retain(|t| now.duration_since(*t) < window);
        if times.len() >= self.config.submits_per_window as usize {
            let oldest = times.first().copied().unwrap_or(now);
            return Err(window.saturating_sub(now.duration_since(oldest)));
        }
        times.push(now);
        Ok(())
    }

    pub fn record_user_agent(&self, agent: &str) {
        let mut inner = self.lock();
        if inner.user_agents.len() == MAX_AGENTS {
            inner.user_agents.remove(0);
        }
        inner.user_agents.push(agent.to_owned());
    }
}

impl Twin for RedditState {
    type Inner = Inner;
    type Endpoint = RedditEndpoint;
    type Snapshot = RedditStateSnapshot;

    fn state_lock(&self) -> &TwinLock<Inner> {
        &self.inner
    }

    fn faults(inner: &mut Inner) -> &mut FaultQueue<RedditEndpoint> {
        &mut inner.faults
    }

    fn requests(inner: &mut Inner) -> &mut RequestLog {
        &mut inner.requests
    }

    fn snapshot(&self) -> RedditStateSnapshot {
        let inner = self.lock();
        RedditStateSnapshot {
            posts: inner
                .posts
                .iter()
                .map(|p| RedditPostSnapshot {
                    id: p.id.clone(),
                    author: p.author.clone(),
                    subreddit: p.subreddit.clone(),
                    kind: p.kind.clone(),
                    title: p.title.clone(),
                    text: p.text.clone(),
                    url: p.url.clone(),
                    flair_id: p.flair_id.clone(),
                    flair_text: p.flair_text.clone(),
                    nsfw: p.nsfw,
                    spoiler: p.spoiler,
                    permalink: p.permalink(),
                    media_ids: match &p.video {
                        Some((asset, _)) => vec![asset.clone()],
                        None => p.gallery.iter().map(|g| g.media_id.clone()).collect(),
                    },
                    poster_url: p.video.as_ref().map(|(_, poster)| poster.clone()),
                })
                .collect(),
            assets: inner
                .assets
                .iter()
                .map(|a| RedditAssetSnapshot {
                    asset_id: a.asset_id.clone(),
                    owner: a.owner.clone(),
                    mimetype: a.mimetype.clone(),
                    bytes: a.bytes,
                    location: a.location.clone(),
                })
                .collect(),
            tokens_issued: inner.issued.clone(),
            user_agents: inner.user_agents.clone(),
            requests: inner.requests.records(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base36_ids() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
    }
}
