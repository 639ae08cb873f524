//! The Meta twin's shared state: Facebook users, their Pages and the Instagram business
//! accounts linked to them, OAuth artefacts, Page posts, photos, videos, Instagram containers
//! and media, faults and the request log.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{
    MetaConfig, MetaContainerSnapshot, MetaEndpoint, MetaIgAccountSnapshot, MetaIgMediaSnapshot,
    MetaIgUploadRecord, MetaIssuedToken, MetaPagePostSnapshot, MetaPageSnapshot, MetaPageSpec,
    MetaPhotoSnapshot, MetaReelUploadRecord, MetaRevokedPermission, MetaStateSnapshot,
    MetaUsageEvent, MetaUserSpec, MetaVideoSnapshot, ALL_TASKS,
};
use crate::faults::FaultQueue;
use crate::inspect::RequestLog;
use crate::lock::{TwinGuard, TwinLock};
use crate::oauth::random_token;
use crate::twin::Twin;

/// Facebook user ids (app-scoped) handed out from here.
const FIRST_USER_ID: u64 = 10_100_000_000_001;
/// Page ids.
const FIRST_PAGE_ID: u64 = 100_200_000_000_001;
/// Instagram business account ids (17 digits, as Instagram's are).
const FIRST_IG_ID: u64 = 17_841_400_000_000_001;
/// Photo, video and post numbers on Facebook.
const FIRST_OBJECT_ID: u64 = 122_000_000_000_001;
/// Instagram container and media ids.
const FIRST_IG_MEDIA_ID: u64 = 17_900_000_000_000_001;

#[derive(Debug, Clone)]
pub(crate) struct User {
    pub id: String,
    pub username: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Page {
    pub id: String,
    pub name: String,
    pub category: String,
    /// The user and the tasks they may perform on the Page.
    pub roles: Vec<(String, Vec<String>)>,
    pub instagram_id: Option<String>,
}

impl Page {
    pub fn tasks_of(&self, user_id: &str) -> Option<&[String]> {
        self.roles
            .iter()
            .find(|(u, _)| u == user_id)
            .map(|(_, t)| t.as_slice())
    }
}

#[derive(Debug, Clone)]
pub(crate) struct IgAccount {
    pub id: String,
    pub username: String,
    pub name: String,
    pub page_id: String,
}

#[derive(Debug, Clone)]
pub(crate) struct AuthCode {
    pub redirect_uri: String,
    pub user_id: String,
    pub expires_at: Instant,
}

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// From the code exchange; hours.
    ShortUser,
    /// From `fb_exchange_token`; about 60 days.
    LongUser,
    /// A Page token from `/me/accounts`: no expiry when the user token was long-lived.
    Page,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ShortUser => "short_lived_user",
            Self::LongUser => "long_lived_user",
            Self::Page => "page",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub user_id: String,
    /// The Page a Page token acts as.
    pub page_id: Option<String>,
    pub expires_at: Option<Instant>,
    /// Error subcode once invalidated: 463 expired, 458 app removed, 460 password changed.
    pub invalidated: Option<i64>,
}

/// The caller of an API request.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub token: String,
    pub kind: TokenKind,
    pub user_id: String,
    pub page_id: Option<String>,
    pub scopes: Vec<String>,
}

impl Caller {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// A photo uploaded to a Page (`published=false` photos wait to be attached to a post).
#[derive(Debug, Clone)]
pub(crate) struct Photo {
    pub id: String,
    pub page_id: String,
    pub url: String,
    pub caption: Option<String>,
    pub published: bool,
    /// The post the photo appears in.
    pub post_id: Option<String>,
    pub created: DateTime<Utc>,
}

/// A post on a Page's feed.
#[derive(Debug, Clone)]
pub(crate) struct PagePost {
    pub id: String,
    pub page_id: String,
    pub message: Option<String>,
    pub link: Option<String>,
    pub photo_ids: Vec<String>,
    pub video_id: Option<String>,
    pub created: DateTime<Utc>,
}

impl PagePost {
    pub fn permalink(&self) -> String {
        let (page, post) = self.id.split_once('_').unwrap_or((&self.page_id, &self.id));
        match &self.video_id {
            Some(video) => format!("https://www.facebook.com/{page}/videos/{video}/"),
            None => format!("https://www.facebook.com/{page}/posts/{post}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VideoState {
    Uploading,
    Processing {
        ready_at: Instant,
    },
    /// Processing failed with this message.
    Error(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Video {
    pub id: String,
    pub page_id: String,
    pub session_id: Option<String>,
    pub file_size: u64,
    pub received: u64,
    pub file_url: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub state: VideoState,
    /// The feed post, once the upload is finished.
    pub post_id: Option<String>,
    /// Processing ends in an error (the `reject_media` fault, or a reel that is no video).
    pub reject: bool,
    pub processing: Duration,
    /// Opened by `POST /{page-id}/video_reels`: its bytes arrive through rupload (`upload`) and
    /// it is published as a reel.
    pub reel: bool,
    pub upload: Option<ResumableUpload>,
    /// When `upload_phase=finish` published the reel (for the 30-per-24-hours limit).
    pub published_at: Option<DateTime<Utc>>,
}

impl Video {
    /// `uploading`, `processing`, `ready` or `error`.
    pub fn status(&self, now: Instant) -> &'static str {
        match &self.state {
            VideoState::Uploading => "uploading",
            VideoState::Processing { ready_at } if now < *ready_at => "processing",
            VideoState::Processing { .. } => "ready",
            VideoState::Error(_) => "error",
        }
    }
}

/// An Instagram media container.
#[derive(Debug, Clone)]
pub(crate) struct Container {
    pub id: String,
    pub ig_id: String,
    /// `IMAGE`, `VIDEO`, `REELS`, `STORIES` or `CAROUSEL`.
    pub media_type: String,
    pub image_url: Option<String>,
    pub video_url: Option<String>,
    pub caption: Option<String>,
    pub children: Vec<String>,
    pub is_carousel_item: bool,
    pub share_to_feed: bool,
    pub created: DateTime<Utc>,
    pub expires_at: Instant,
    pub ready_at: Instant,
    /// `(subcode, message)` once processing has failed.
    pub error: Option<(i64, String)>,
    pub published_id: Option<String>,
    /// Made with `upload_type=resumable`: its video arrives through rupload.
    pub upload: Option<ResumableUpload>,
}

/// The bytes of a resumable container, as rupload received them.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResumableUpload {
    /// Announced by the first upload request (`file_size` header).
    pub file_size: Option<u64>,
    /// Bytes held, from the start of the file.
    pub received: u64,
    /// FNV-1a of the bytes held.
    pub checksum: u64,
    /// The first bytes of the file (to tell a video from anything else).
    pub head: Vec<u8>,
    /// How long processing takes once every byte is in.
    pub processing: Duration,
}

impl ResumableUpload {
    pub fn complete(&self) -> bool {
        self.file_size.is_some_and(|size| self.received >= size)
    }
}

impl Container {
    /// Where the container's media is: its URL, or the CDN address of an uploaded video.
    pub fn media_url(&self) -> Option<String> {
        self.image_url
            .clone()
            .or_else(|| self.video_url.clone())
            .or_else(|| {
                self.upload
                    .as_ref()
                    .map(|_| format!("https://scontent.cdninstagram.com/o1/v/{}.mp4", self.id))
            })
    }
}

/// Published Instagram media.
#[derive(Debug, Clone)]
pub(crate) struct IgMedia {
    pub id: String,
    pub ig_id: String,
    pub username: String,
    pub container_id: String,
    /// `IMAGE`, `VIDEO` or `CAROUSEL_ALBUM`.
    pub media_type: String,
    /// `FEED`, `REELS` or `STORY`.
    pub media_product_type: String,
    pub caption: String,
    pub media_urls: Vec<String>,
    pub shortcode: String,
    pub timestamp: DateTime<Utc>,
}

impl IgMedia {
    pub fn permalink(&self) -> String {
        match self.media_product_type.as_str() {
            "REELS" => format!("https://www.instagram.com/reel/{}/", self.shortcode),
            "STORY" => format!(
                "https://www.instagram.com/stories/{}/{}/",
                self.username, self.id
            ),
            _ => format!("https://www.instagram.com/p/{}/", self.shortcode),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    next_user: u64,
    next_page: u64,
    next_ig: u64,
    next_object: u64,
    next_ig_media: u64,
    pub users: HashMap<String, User>,
    pub pages: Vec<Page>,
    pub ig_accounts: Vec<IgAccount>,
    pub codes: HashMap<String, AuthCode>,
    pub tokens: HashMap<String, Token>,
    pub issued: Vec<MetaIssuedToken>,
    pub photos: Vec<Photo>,
    pub posts: Vec<PagePost>,
    pub videos: Vec<Video>,
    pub containers: HashMap<String, Container>,
    pub container_order: Vec<String>,
    pub ig_media: Vec<IgMedia>,
    pub faults: FaultQueue<MetaEndpoint>,
    pub requests: RequestLog,
    /// Every rupload request, in order.
    pub ig_uploads: Vec<MetaIgUploadRecord>,
    /// Every rupload request of a Page reel (`/video-upload`), in order.
    pub reel_uploads: Vec<MetaReelUploadRecord>,
    /// Reel publishes refused because the Page had published its 30 reels of 24 hours.
    pub reel_quota_refusals: u64,
    /// `media_publish` calls refused because the publishing quota was used up.
    pub ig_quota_refusals: u64,
    /// API calls per usage owner (`app`, a Page id or an Instagram account id) in its current
    /// window: when the window started and how many calls it counted.
    pub calls: HashMap<String, (Instant, u64)>,
    /// Every time a usage owner's budget ran out, and every call refused for it.
    pub usage_events: Vec<MetaUsageEvent>,
    pub revoked_permissions: Vec<MetaRevokedPermission>,
    /// What each user (by id) decided about each permission the app asked for, at their latest
    /// login: Facebook keeps permissions per person and app, not per token.
    pub consents: HashMap<String, BTreeMap<String, &'static str>>,
    /// The app's Deauthorize Callback URL (Meta: set in the app dashboard).
    pub deauthorize_url: Option<String>,
}

/// What [`MetaState::count_call`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallCount {
    /// Percent of the owner's budget used, at most 100.
    pub percent: u64,
    /// Whole minutes until the owner's budget is back (0 while some is left): Meta's
    /// `estimated_time_to_regain_access`.
    pub regain_minutes: u64,
    /// Whether the call is within the budget (a refused call is not counted).
    pub allowed: bool,
}

impl Inner {
    pub fn next_object_id(&mut self) -> String {
        let id = self.next_object;
        self.next_object += 1;
        id.to_string()
    }

    pub fn next_ig_media_id(&mut self) -> String {
        let id = self.next_ig_media;
        self.next_ig_media += 1;
        id.to_string()
    }

    pub fn user_by_username(&self, username: &str) -> Option<&User> {
        self.users.values().find(|u| u.username == username)
    }

    /// Creates (or replaces the Pages of) a user from `spec`; returns the user id.
    pub fn define_user(&mut self, spec: &MetaUserSpec) -> String {
        let user_id = match self.user_by_username(&spec.username) {
            Some(user) => user.id.clone(),
            None => {
                let id = self.next_user.to_string();
                self.next_user += 1;
                id
            }
        };
        self.users.insert(
            user_id.clone(),
            User {
                id: user_id.clone(),
                username: spec.username.clone(),
                name: spec.name.clone().unwrap_or_else(|| spec.username.clone()),
            },
        );
        for page in &mut self.pages {
            page.roles.retain(|(u, _)| u != &user_id);
        }
        for page in &spec.pages {
            self.add_page(&user_id, page);
        }
        user_id
    }

    /// Gives `user_id` a role on the Page named in `spec` (created if new), and links its
    /// Instagram account.
    fn add_page(&mut self, user_id: &str, spec: &MetaPageSpec) {
        let tasks = spec
            .tasks
            .clone()
            .unwrap_or_else(|| ALL_TASKS.iter().map(|t| (*t).to_owned()).collect());
        let index = match self.pages.iter().position(|p| p.name == spec.name) {
            Some(index) => index,
            None => {
                let id = self.next_page.to_string();
                self.next_page += 1;
                self.pages.push(Page {
                    id,
                    name: spec.name.clone(),
                    category: spec.category.clone().unwrap_or_else(|| "Brand".into()),
                    roles: Vec::new(),
                    instagram_id: None,
                });
                self.pages.len() - 1
            }
        };
        self.pages[index].roles.push((user_id.to_owned(), tasks));
        let Some(ig_username) = &spec.instagram_business_account else {
            return;
        };
        let page_id = self.pages[index].id.clone();
        let ig_id = match self.ig_accounts.iter().find(|a| &a.username == ig_username) {
            Some(account) => account.id.clone(),
            None => {
                let id = self.next_ig.to_string();
                self.next_ig += 1;
                self.ig_accounts.push(IgAccount {
                    id: id.clone(),
                    username: ig_username.clone(),
                    name: spec.name.clone(),
                    page_id: page_id.clone(),
                });
                id
            }
        };
        self.pages[index].instagram_id = Some(ig_id);
    }

    /// The user named `username`, created with the default Pages if unknown.
    /// The user's answer in the login dialog: `granted` and `declined` permissions.
    pub fn record_consent(&mut self, user_id: &str, granted: &[String], declined: &[String]) {
        let consent = self.consents.entry(user_id.to_owned()).or_default();
        for permission in granted {
            consent.insert(permission.clone(), "granted");
        }
        for permission in declined {
            consent.insert(permission.clone(), "declined");
        }
    }

    pub fn user_for_login(&mut self, username: &str) -> User {
        if let Some(user) = self.user_by_username(username) {
            return user.clone();
        }
        let id = self.define_user(&MetaUserSpec::default_for(username));
        self.users[&id].clone()
    }

    pub fn issue_token(
        &mut self,
        kind: TokenKind,
        user_id: &str,
        page_id: Option<&str>,
        lifetime: Option<Duration>,
    ) -> String {
        let token = format!("EAA{}", random_token(36));
        let now = Instant::now();
        self.tokens.insert(
            token.clone(),
            Token {
                kind,
                user_id: user_id.to_owned(),
                page_id: page_id.map(str::to_owned),
                expires_at: lifetime.map(|l| now + l),
                invalidated: None,
            },
        );
        self.issued.push(MetaIssuedToken {
            access_token: token.clone(),
            user_id: user_id.to_owned(),
            page_id: page_id.map(str::to_owned),
            kind: kind.as_str().to_owned(),
        });
        token
    }

    pub fn page(&self, id: &str) -> Option<&Page> {
        self.pages.iter().find(|p| p.id == id)
    }

    pub fn ig_account(&self, id: &str) -> Option<&IgAccount> {
        self.ig_accounts.iter().find(|a| a.id == id)
    }

    /// A container's status code: `IN_PROGRESS`, `FINISHED`, `ERROR`, `EXPIRED` or `PUBLISHED`,
    /// with the error `(subcode, message)` when `ERROR`.
    pub fn container_status(
        &self,
        container: &Container,
        now: Instant,
    ) -> (&'static str, Option<(i64, String)>) {
        if container.published_id.is_some() {
            return ("PUBLISHED", None);
        }
        if now >= container.expires_at {
            return ("EXPIRED", None);
        }
        if now < container.ready_at || container.upload.as_ref().is_some_and(|u| !u.complete()) {
            return ("IN_PROGRESS", None);
        }
        if let Some(error) = &container.error {
            return ("ERROR", Some(error.clone()));
        }
        for child in &container.children {
            match self
                .containers
                .get(child)
                .map(|c| self.container_status(c, now))
            {
                Some(("FINISHED", _)) => {}
                Some(("IN_PROGRESS", _)) => return ("IN_PROGRESS", None),
                Some((_, Some(error))) => return ("ERROR", Some(error)),
                _ => {
                    return (
                        "ERROR",
                        Some((
                            2_207_006,
                            format!("The carousel item {child} cannot be used."),
                        )),
                    )
                }
            }
        }
        ("FINISHED", None)
    }

    /// Whether the post is visible: a video post only once its video is ready.
    pub fn post_visible(&self, post: &PagePost, now: Instant) -> bool {
        match &post.video_id {
            None => true,
            Some(video) => self
                .videos
                .iter()
                .find(|v| &v.id == video)
                .is_some_and(|v| v.status(now) == "ready"),
        }
    }

    /// Media `ig_id` published within `window` (and since `since`, if later).
    pub fn quota_usage(
        &self,
        ig_id: &str,
        window: Duration,
        since: Option<DateTime<Utc>>,
    ) -> usize {
        let start = Utc::now() - chrono::TimeDelta::from_std(window).unwrap_or_default();
        let start = since.map_or(start, |s| s.max(start));
        self.ig_media
            .iter()
            .filter(|m| m.ig_id == ig_id && m.timestamp > start)
            .count()
    }
}

/// The Meta twin's state, shared by all server workers.
#[derive(Debug)]
pub(crate) struct MetaState {
    pub config: MetaConfig,
    /// Fetches media URLs the way Meta does before accepting them.
    pub http: reqwest::Client,
    inner: TwinLock<Inner>,
}

impl MetaState {
    pub fn new(config: MetaConfig) -> Self {
        let http = crate::outbound::client(config.media_fetch_timeout);
        let mut inner = Inner {
            next_user: FIRST_USER_ID,
            next_page: FIRST_PAGE_ID,
            next_ig: FIRST_IG_ID,
            next_object: FIRST_OBJECT_ID,
            next_ig_media: FIRST_IG_MEDIA_ID,
            users: HashMap::new(),
            pages: Vec::new(),
            ig_accounts: Vec::new(),
            codes: HashMap::new(),
            tokens: HashMap::new(),
            issued: Vec::new(),
            photos: Vec::new(),
            posts: Vec::new(),
            videos: Vec::new(),
            containers: HashMap::new(),
            container_order: Vec::new(),
            ig_media: Vec::new(),
            faults: FaultQueue::new(MetaEndpoint::Any),
            requests: RequestLog::default(),
            ig_uploads: Vec::new(),
            reel_uploads: Vec::new(),
            reel_quota_refusals: 0,
            ig_quota_refusals: 0,
            calls: HashMap::new(),
            usage_events: Vec::new(),
            revoked_permissions: Vec::new(),
            consents: HashMap::new(),
            deauthorize_url: None,
        };
        for spec in &config.users {
            inner.define_user(spec);
        }
        Self {
            config,
            http,
            inner: TwinLock::new(inner),
        }
    }

    /// The twin's state for one step of a request. Helpers take the guard's `&Inner`, never
    /// `&self`, so nothing under it locks again (see [`crate::lock`]).
    pub fn lock(&self) -> TwinGuard<'_, Inner> {
        self.inner.lock()
    }

    /// The caller of a valid token, or the 190 subcode to answer with (`None`: no subcode).
    pub fn authenticate(&self, token: &str) -> Result<Caller, Option<i64>> {
        let inner = self.lock();
        let t = inner.tokens.get(token).ok_or(None)?;
        if let Some(subcode) = t.invalidated {
            return Err(Some(subcode));
        }
        if t.expires_at.is_some_and(|at| Instant::now() >= at) {
            return Err(Some(463));
        }
        Ok(Caller {
            token: token.to_owned(),
            kind: t.kind,
            user_id: t.user_id.clone(),
            page_id: t.page_id.clone(),
            // Facebook keeps permissions per person and app: every token of the person has
            // what they granted at their latest login, less what they took back since.
            scopes: inner
                .consents
                .get(&t.user_id)
                .into_iter()
                .flatten()
                .filter(|(_, status)| **status == "granted")
                .map(|(permission, _)| permission.clone())
                .collect(),
        })
    }

    pub fn invalidate_token(&self, token: &str, subcode: i64) {
        if let Some(t) = self.lock().tokens.get_mut(token) {
            t.invalidated = Some(subcode);
        }
    }

    /// Takes `permission` from the user (so from every token of theirs, Page tokens included)
    /// and records it.
    pub fn revoke_permission(&self, user_id: &str, permission: &str) {
        let mut inner = self.lock();
        if let Some(consent) = inner.consents.get_mut(user_id) {
            consent.remove(permission);
        }
        inner.revoked_permissions.push(MetaRevokedPermission {
            user_id: user_id.to_owned(),
            permission: permission.to_owned(),
        });
    }

    /// Invalidates every token of the user, Page tokens included (the app was removed).
    pub fn revoke_user(&self, user_id: &str, subcode: i64) {
        for t in self.lock().tokens.values_mut() {
            if t.user_id == user_id {
                t.invalidated = Some(subcode);
            }
        }
    }

    /// Counts one call for `owner`; returns its usage in percent of the call budget.
    /// Counts one call against `owner`'s budget of `call_budget` calls per `usage_window`
    /// (a fixed window from its first call). Past the budget the call is refused until the
    /// window ends; the call that spends the last of it says how long that is.
    pub fn count_call(&self, owner: &str) -> CallCount {
        let now = Instant::now();
        let budget = self.config.call_budget.max(1);
        let window = self.config.usage_window;
        let mut inner = self.lock();
        let entry = inner.calls.entry(owner.to_owned()).or_insert((now, 0));
        if now.duration_since(entry.0) >= window {
            *entry = (now, 0);
        }
        let left = window.saturating_sub(now.duration_since(entry.0));
        let regain_minutes = left.as_secs().div_ceil(60).max(1);
        let allowed = entry.1 < budget;
        if allowed {
            entry.1 += 1;
        }
        let percent = (entry.1 * 100 / budget).min(100);
        let spent = percent >= 100;
        if spent && (!allowed || entry.1 == budget) {
            inner.usage_events.push(MetaUsageEvent {
                owner: owner.to_owned(),
                at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                refused: !allowed,
                regain_minutes,
            });
        }
        CallCount {
            percent,
            regain_minutes: if spent { regain_minutes } else { 0 },
            allowed,
        }
    }

    pub fn define_user(&self, spec: &MetaUserSpec) -> String {
        self.lock().define_user(spec)
    }
}

impl Twin for MetaState {
    type Inner = Inner;
    type Endpoint = MetaEndpoint;
    type Snapshot = MetaStateSnapshot;

    fn state_lock(&self) -> &TwinLock<Inner> {
        &self.inner
    }

    fn faults(inner: &mut Inner) -> &mut FaultQueue<MetaEndpoint> {
        &mut inner.faults
    }

    fn requests(inner: &mut Inner) -> &mut RequestLog {
        &mut inner.requests
    }

    fn snapshot(&self) -> MetaStateSnapshot {
        let inner = self.lock();
        let now = Instant::now();
        let mut users: Vec<_> = inner.users.values().cloned().collect();
        users.sort_by(|a, b| a.id.cmp(&b.id));
        MetaStateSnapshot {
            users: users
                .into_iter()
                .map(|u| super::MetaUserSnapshot {
                    id: u.id,
                    username: u.username,
                    name: u.name,
                })
                .collect(),
            pages: inner
                .pages
                .iter()
                .map(|p| MetaPageSnapshot {
                    id: p.id.clone(),
                    name: p.name.clone(),
                    instagram_business_account: p.instagram_id.clone(),
                    roles: p.roles.iter().map(|(u, _)| u.clone()).collect(),
                })
                .collect(),
            instagram_accounts: inner
                .ig_accounts
                .iter()
                .map(|a| MetaIgAccountSnapshot {
                    id: a.id.clone(),
                    username: a.username.clone(),
                    page_id: a.page_id.clone(),
                })
                .collect(),
            page_posts: inner
                .posts
                .iter()
                .map(|p| MetaPagePostSnapshot {
                    id: p.id.clone(),
                    page_id: p.page_id.clone(),
                    message: p.message.clone(),
                    link: p.link.clone(),
                    photo_urls: p
                        .photo_ids
                        .iter()
                        .filter_map(|id| inner.photos.iter().find(|ph| &ph.id == id))
                        .map(|ph| ph.url.clone())
                        .collect(),
                    video_id: p.video_id.clone(),
                    permalink_url: p.permalink(),
                    visible: inner.post_visible(p, now),
                    created_time: p.created.to_rfc3339(),
                })
                .collect(),
            photos: inner
                .photos
                .iter()
                .map(|p| MetaPhotoSnapshot {
                    id: p.id.clone(),
                    page_id: p.page_id.clone(),
                    url: p.url.clone(),
                    published: p.published,
                    post_id: p.post_id.clone(),
                })
                .collect(),
            videos: inner
                .videos
                .iter()
                .map(|v| MetaVideoSnapshot {
                    id: v.id.clone(),
                    page_id: v.page_id.clone(),
                    file_size: v.file_size,
                    bytes_received: v.received,
                    file_url: v.file_url.clone(),
                    title: v.title.clone(),
                    description: v.description.clone(),
                    status: v.status(now).to_owned(),
                    post_id: v.post_id.clone(),
                    reel: v.reel,
                    upload_checksum: v
                        .upload
                        .as_ref()
                        .filter(|u| u.complete())
                        .map(|u| format!("{:016x}", u.checksum)),
                })
                .collect(),
            containers: inner
                .container_order
                .iter()
                .filter_map(|id| inner.containers.get(id))
                .map(|c| MetaContainerSnapshot {
                    id: c.id.clone(),
                    ig_id: c.ig_id.clone(),
                    media_type: c.media_type.clone(),
                    image_url: c.image_url.clone(),
                    video_url: c.video_url.clone(),
                    caption: c.caption.clone(),
                    children: c.children.clone(),
                    is_carousel_item: c.is_carousel_item,
                    share_to_feed: c.share_to_feed,
                    status_code: inner.container_status(c, now).0.to_owned(),
                    upload_type: c.upload.as_ref().map(|_| "resumable".to_owned()),
                    file_size: c.upload.as_ref().and_then(|u| u.file_size),
                    bytes_received: c.upload.as_ref().map_or(0, |u| u.received),
                    upload_checksum: c
                        .upload
                        .as_ref()
                        .filter(|u| u.complete())
                        .map(|u| format!("{:016x}", u.checksum)),
                })
                .collect(),
            instagram_media: inner
                .ig_media
                .iter()
                .map(|m| MetaIgMediaSnapshot {
                    id: m.id.clone(),
                    ig_id: m.ig_id.clone(),
                    container_id: m.container_id.clone(),
                    media_type: m.media_type.clone(),
                    media_product_type: m.media_product_type.clone(),
                    caption: m.caption.clone(),
                    media_urls: m.media_urls.clone(),
                    permalink: m.permalink(),
                    timestamp: m.timestamp.to_rfc3339(),
                })
                .collect(),
            tokens_issued: inner.issued.clone(),
            ig_uploads: inner.ig_uploads.clone(),
            ig_quota_refusals: inner.ig_quota_refusals,
            reel_uploads: inner.reel_uploads.clone(),
            reel_quota_refusals: inner.reel_quota_refusals,
            requests: inner.requests.records(),
            usage_events: inner.usage_events.clone(),
            revoked_permissions: inner.revoked_permissions.clone(),
        }
    }
}
