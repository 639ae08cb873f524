//! Threads' OAuth flow (platform-facts §6.1), publishing endpoints (§6.2, §6.3) and replies
//! (https://developers.facebook.com/documentation/threads/retrieve-and-manage-replies and its
//! pages create-replies and replies-and-conversations).

use std::time::{Duration, Instant};

use actix_web::http::header::LOCATION;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::graph::{fields, graph_time, no_object, paginate, paging, parse_time};
use super::state::{Caller, Container, Inner, Post};
use super::{
    finish, graph_error, guard, invalid_parameter, invalid_token, param, params, text_length,
    ThreadsEndpoint, ThreadsState, DEFAULT_USERNAME, MAX_TEXT,
};
use crate::faults::{self, Fault};
use crate::oauth::{constant_time_eq, parse_redirect_uri, random_token, redirect_with};
use crate::twin::Twin as _;

const BASIC: &str = "threads_basic";
const PUBLISH: &str = "threads_content_publish";
/// "Required for making POST calls to reply endpoints."
const MANAGE_REPLIES: &str = "threads_manage_replies";
/// "Required for making GET calls to reply endpoints."
const READ_REPLIES: &str = "threads_read_replies";
/// Either lets a profile reply to posts of others (create-replies: "you are the owner of the
/// root thread post" otherwise).
const REPLY_TO_OTHERS: &[&str] = &["threads_keyword_search", "threads_manage_mentions"];
const KNOWN_SCOPES: &[&str] = &[
    BASIC,
    PUBLISH,
    MANAGE_REPLIES,
    READ_REPLIES,
    "threads_delete",
    "threads_manage_insights",
    "threads_location_tagging",
    "threads_keyword_search",
    "threads_manage_mentions",
];
/// Authorization codes are short-lived.
const CODE_LIFETIME: Duration = Duration::from_secs(600);
/// Carousel size (platform-facts §6.2).
const CAROUSEL_CHILDREN: std::ops::RangeInclusive<usize> = 2..=20;

fn page_error(detail: &str) -> HttpResponse {
    invalid_parameter(detail, None)
}

fn valid_username(u: &str) -> bool {
    (1..=30).contains(&u.len())
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// `GET /oauth/authorize`: validates, auto-approves, redirects with `code` and `state`.
pub(crate) async fn authorize(state: web::Data<ThreadsState>, req: HttpRequest) -> HttpResponse {
    let q = params(&req, &[]);
    // Until client and redirect URI are trusted, errors must not redirect.
    if param(&q, "client_id") != Some(state.config.client_id.as_str()) {
        return page_error("Invalid platform app");
    }
    let Some(redirect) = param(&q, "redirect_uri").and_then(parse_redirect_uri) else {
        return page_error("Invalid redirect_uri");
    };
    let client_state = param(&q, "state").unwrap_or_default();
    let fail = |reason: &str| {
        let mut p = vec![
            ("error", "invalid_request"),
            ("error_reason", reason),
            ("error_description", reason),
        ];
        if !client_state.is_empty() {
            p.push(("state", client_state));
        }
        HttpResponse::Found()
            .insert_header((LOCATION, redirect_with(&redirect, &p)))
            .finish()
    };
    if param(&q, "response_type") != Some("code") {
        return fail("response_type must be code");
    }
    // Threads separates scopes with commas; spaces are tolerated.
    let scopes: Vec<String> = param(&q, "scope")
        .unwrap_or_default()
        .split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if !scopes.iter().any(|s| s == BASIC) {
        return fail("the threads_basic scope is required");
    }
    if let Some(bad) = scopes.iter().find(|s| !KNOWN_SCOPES.contains(&s.as_str())) {
        return fail(&format!("unknown scope {bad}"));
    }
    let username = param(&q, "sandbox_user").unwrap_or(DEFAULT_USERNAME);
    if !valid_username(username) {
        return fail("sandbox_user must be 1-30 characters of [A-Za-z0-9_.]");
    }
    let code = random_token(32);
    {
        let mut inner = state.lock();
        let user = inner.user_by_username(username);
        inner.codes.insert(
            code.clone(),
            super::state::AuthCode {
                redirect_uri: redirect.to_string(),
                user_id: user.id,
                scopes,
                expires_at: Instant::now() + CODE_LIFETIME,
            },
        );
    }
    let mut p = vec![("code", code.as_str())];
    if !client_state.is_empty() {
        p.push(("state", client_state));
    }
    HttpResponse::Found()
        .insert_header((LOCATION, redirect_with(&redirect, &p)))
        .finish()
}

/// A token-endpoint fault, if one is queued and blocks the call.
async fn token_fault(state: &ThreadsState) -> Option<HttpResponse> {
    let fault = state.take_fault(ThreadsEndpoint::Token)?;
    super::blocking_fault_response(&fault, None).await
}

fn secret_ok(state: &ThreadsState, secret: Option<&str>) -> bool {
    secret.is_some_and(|s| constant_time_eq(s.as_bytes(), state.config.client_secret.as_bytes()))
}

/// `POST /oauth/access_token`: authorization code → short-lived token.
pub(crate) async fn exchange_code(
    state: web::Data<ThreadsState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(resp) = token_fault(&state).await {
        return resp;
    }
    let p = params(&req, &body);
    if param(&p, "client_id") != Some(state.config.client_id.as_str()) {
        return invalid_parameter("Invalid client_id", None);
    }
    if !secret_ok(&state, param(&p, "client_secret")) {
        return super::graph::bad_client_secret();
    }
    if param(&p, "grant_type") != Some("authorization_code") {
        return invalid_parameter("grant_type must be authorization_code", None);
    }
    let code = param(&p, "code").unwrap_or_default();
    let redirect_uri = param(&p, "redirect_uri").unwrap_or_default();
    let mut inner = state.lock();
    // Codes are single-use: removed whether or not the rest matches.
    let Some(grant) = inner.codes.remove(code) else {
        return invalid_parameter("Invalid verification code format.", Some(36007));
    };
    let redirect_matches =
        parse_redirect_uri(redirect_uri).is_some_and(|u| u.as_str() == grant.redirect_uri);
    if !redirect_matches {
        return invalid_parameter("Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request", Some(36008));
    }
    if Instant::now() > grant.expires_at {
        return invalid_parameter("This authorization code has expired.", Some(36007));
    }
    let token = inner.issue_token(
        &grant.user_id,
        grant.scopes,
        false,
        state.config.short_lived_lifetime,
    );
    let user_id: u64 = grant.user_id.parse().unwrap_or_default();
    HttpResponse::Ok().json(json!({ "access_token": token, "user_id": user_id }))
}

/// `GET /access_token?grant_type=th_exchange_token&client_secret=&access_token=`.
pub(crate) async fn exchange_long_lived(
    state: web::Data<ThreadsState>,
    req: HttpRequest,
) -> HttpResponse {
    if let Some(resp) = token_fault(&state).await {
        return resp;
    }
    let p = params(&req, &[]);
    if param(&p, "grant_type") != Some("th_exchange_token") {
        return invalid_parameter("grant_type must be th_exchange_token", None);
    }
    if !secret_ok(&state, param(&p, "client_secret")) {
        return super::graph::bad_client_secret();
    }
    let Some(caller) = param(&p, "access_token").and_then(|t| state.authenticate(t)) else {
        // An expired short-lived token cannot be exchanged.
        return invalid_token(None);
    };
    let lifetime = state.config.long_lived_lifetime;
    let token = state
        .lock()
        .issue_token(&caller.user_id, caller.scopes, true, lifetime);
    HttpResponse::Ok().json(json!({
        "access_token": token, "token_type": "bearer", "expires_in": lifetime.as_secs(),
    }))
}

/// `GET /refresh_access_token?grant_type=th_refresh_token&access_token=`: a long-lived token
/// at least `min_refresh_age` old and unexpired → a new long-lived token.
pub(crate) async fn refresh(state: web::Data<ThreadsState>, req: HttpRequest) -> HttpResponse {
    if let Some(resp) = token_fault(&state).await {
        return resp;
    }
    let p = params(&req, &[]);
    if param(&p, "grant_type") != Some("th_refresh_token") {
        return invalid_parameter("grant_type must be th_refresh_token", None);
    }
    let token = param(&p, "access_token").unwrap_or_default();
    let Some(caller) = state.authenticate(token) else {
        return invalid_token(None);
    };
    let mut inner = state.lock();
    let Some(old) = inner.tokens.get(token).cloned() else {
        return invalid_token(None);
    };
    if !old.long_lived {
        return invalid_parameter("Only long-lived tokens can be refreshed.", None);
    }
    if old.issued_at.elapsed() < state.config.min_refresh_age {
        return invalid_parameter(
            "The token must be at least 24 hours old to be refreshed.",
            None,
        );
    }
    let lifetime = state.config.long_lived_lifetime;
    let fresh = inner.issue_token(&caller.user_id, caller.scopes, true, lifetime);
    HttpResponse::Ok().json(json!({
        "access_token": fresh, "token_type": "bearer", "expires_in": lifetime.as_secs(),
    }))
}

/// `GET /me?fields=id,username,name`.
pub(crate) async fn me(state: web::Data<ThreadsState>, req: HttpRequest) -> HttpResponse {
    let p = params(&req, &[]);
    let ctx = match guard(&state, &req, &p, ThreadsEndpoint::Me, &[BASIC]).await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let user = state.lock().users.get(&ctx.caller.user_id).cloned();
    let Some(user) = user else {
        return invalid_token(None);
    };
    let fields = param(&p, "fields").unwrap_or("id");
    let mut body = json!({ "id": user.id });
    for field in fields.split(',') {
        match field.trim() {
            "username" => body["username"] = json!(user.username),
            "name" => body["name"] = json!(user.name),
            _ => {}
        }
    }
    finish(ctx, HttpResponse::Ok().json(body)).await
}

/// The caller acts only on their own user id (`me` is accepted too).
fn own_user(path_user: &str, caller_id: &str) -> Result<(), Box<HttpResponse>> {
    if path_user == caller_id || path_user == "me" {
        return Ok(());
    }
    Err(Box::new(no_object(path_user)))
}

/// `POST /{user-id}/threads`: creates a media container.
pub(crate) async fn create_container(
    state: web::Data<ThreadsState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let p = params(&req, &body);
    let reply_to_id = param(&p, "reply_to_id").map(str::to_owned);
    let scopes: &[&str] = match reply_to_id {
        Some(_) => &[BASIC, PUBLISH, MANAGE_REPLIES],
        None => &[BASIC, PUBLISH],
    };
    let ctx = match guard(&state, &req, &p, ThreadsEndpoint::CreateContainer, scopes).await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    if let Err(resp) = own_user(&path, &ctx.caller.user_id) {
        return *resp;
    }
    if let Some(parent) = &reply_to_id {
        if let Err(resp) = may_reply_to(&state.lock(), &ctx.caller, parent) {
            return *resp;
        }
    }
    let media_type = param(&p, "media_type").unwrap_or_default().to_owned();
    let text = param(&p, "text").map(str::to_owned);
    let image_url = param(&p, "image_url").map(str::to_owned);
    let video_url = param(&p, "video_url").map(str::to_owned);
    let is_carousel_item = param(&p, "is_carousel_item") == Some("true");
    let children: Vec<String> = param(&p, "children")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(t) = &text {
        let length = text_length(t);
        if length > MAX_TEXT {
            return invalid_parameter(
                &format!("The text is too long: {length} characters; the maximum is {MAX_TEXT}."),
                Some(4_279_009),
            );
        }
    }
    let absolute = |u: &Option<String>| {
        u.as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .is_some_and(|u| matches!(u.scheme(), "http" | "https"))
    };
    let now = Instant::now();
    let mut ready_at = now;
    match media_type.as_str() {
        "TEXT" if is_carousel_item => {
            return invalid_parameter("A TEXT container cannot be a carousel item.", None)
        }
        "TEXT" if text.as_deref().is_none_or(|t| t.trim().is_empty()) => {
            return invalid_parameter("The parameter text is required for TEXT posts.", None)
        }
        "TEXT" => {}
        "IMAGE" if !absolute(&image_url) => {
            return invalid_parameter("The parameter image_url is required for IMAGE.", None)
        }
        "IMAGE" => {}
        "VIDEO" if !absolute(&video_url) => {
            return invalid_parameter("The parameter video_url is required for VIDEO.", None)
        }
        "VIDEO" => ready_at = now + state.config.video_processing_delay,
        "CAROUSEL" if is_carousel_item => {
            return invalid_parameter("A carousel cannot be a carousel item.", None)
        }
        "CAROUSEL" if !CAROUSEL_CHILDREN.contains(&children.len()) => {
            return invalid_parameter(
                &format!("A carousel needs 2 to 20 children; got {}.", children.len()),
                None,
            )
        }
        "CAROUSEL" => {
            let inner = state.lock();
            let bad = children.iter().find(|id| {
                !inner.containers.get(*id).is_some_and(|c| {
                    c.owner_id == ctx.caller.user_id
                        && c.is_carousel_item
                        && c.published_id.is_none()
                })
            });
            if let Some(bad) = bad {
                return invalid_parameter(
                    &format!("The child {bad} is not an unpublished carousel item of this user."),
                    None,
                );
            }
        }
        _ => {
            return invalid_parameter(
                "The parameter media_type must be one of TEXT, IMAGE, VIDEO, CAROUSEL.",
                None,
            )
        }
    }
    let mut error_message = None;
    match &ctx.fault {
        Some(Fault::SlowProcessing { secs }) => ready_at = now + faults::secs(*secs),
        Some(Fault::RejectMedia) => {
            error_message = Some("The media could not be processed: unsupported format.".into())
        }
        _ => {}
    }
    let id = {
        let mut inner = state.lock();
        let id = inner.next_media_id();
        inner.containers.insert(
            id.clone(),
            Container {
                id: id.clone(),
                owner_id: ctx.caller.user_id.clone(),
                media_type,
                text,
                image_url,
                video_url,
                children,
                is_carousel_item,
                reply_to_id,
                ready_at,
                error_message,
                published_id: None,
            },
        );
        inner.container_order.push(id.clone());
        id
    };
    finish(ctx, HttpResponse::Ok().json(json!({ "id": id }))).await
}

/// A profile replies to a post whose conversation it started, or to any post with a
/// permission to reply to others (create-replies); otherwise the twin refuses `reply_to_id`
/// (code 100: a refusal no reconnecting cures).
fn may_reply_to(inner: &Inner, caller: &Caller, parent: &str) -> Result<(), Box<HttpResponse>> {
    let Some(root) = inner.root_of(parent) else {
        return Err(Box::new(invalid_parameter(
            &format!("The parameter reply_to_id ({parent}) is not a Threads post."),
            None,
        )));
    };
    let to_others = caller
        .scopes
        .iter()
        .any(|s| REPLY_TO_OTHERS.contains(&s.as_str()));
    if root.owner_id != caller.user_id && !to_others {
        return Err(Box::new(invalid_parameter(
            &format!("The parameter reply_to_id ({parent}) is in a conversation this profile did not start; replying to others needs threads_manage_mentions or threads_keyword_search."),
            None,
        )));
    }
    Ok(())
}

/// Which of the profile's two publishing quotas a post takes from: replies have their own
/// (1,000 a day against 250 posts, retrieve-and-manage-replies), so neither counts the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quota {
    Posts,
    Replies,
}

impl Quota {
    fn of(post_is_reply: bool) -> Self {
        if post_is_reply {
            Self::Replies
        } else {
            Self::Posts
        }
    }

    fn total(self, config: &super::ThreadsConfig) -> u32 {
        match self {
            Self::Posts => config.quota_total,
            Self::Replies => config.reply_quota_total,
        }
    }

    /// `{"quota_total", "quota_duration"}`.
    fn config(self, config: &super::ThreadsConfig) -> serde_json::Value {
        json!({
            "quota_total": self.total(config),
            "quota_duration": config.quota_duration.as_secs(),
        })
    }

    /// Posts of this kind `user_id` published within the quota window.
    fn usage(self, inner: &Inner, user_id: &str, window: Duration) -> usize {
        let since = chrono::Utc::now() - chrono::TimeDelta::from_std(window).unwrap_or_default();
        inner
            .posts
            .iter()
            .filter(|p| p.owner_id == user_id && p.timestamp > since)
            .filter(|p| Self::of(p.reply_to_id.is_some()) == self)
            .count()
    }
}

/// `POST /{user-id}/threads_publish?creation_id=`: publishes a finished container once.
pub(crate) async fn publish(
    state: web::Data<ThreadsState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let p = params(&req, &body);
    let ctx = match guard(
        &state,
        &req,
        &p,
        ThreadsEndpoint::Publish,
        &[BASIC, PUBLISH],
    )
    .await
    {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    if let Err(resp) = own_user(&path, &ctx.caller.user_id) {
        return *resp;
    }
    let creation_id = param(&p, "creation_id").unwrap_or_default().to_owned();
    if let Some(Fault::SlowProcessing { secs }) = &ctx.fault {
        // A slow publish: the quota is judged once it is done.
        tokio::time::sleep(faults::secs(*secs)).await;
    }
    let result = {
        let mut inner = state.lock();
        publish_container(&state, &mut inner, &ctx.caller.user_id, &creation_id)
    };
    match result {
        Ok(id) => finish(ctx, HttpResponse::Ok().json(json!({ "id": id }))).await,
        Err(resp) => *resp,
    }
}

fn publish_container(
    state: &ThreadsState,
    inner: &mut Inner,
    user_id: &str,
    creation_id: &str,
) -> Result<String, Box<HttpResponse>> {
    let Some(container) = inner
        .containers
        .get(creation_id)
        .filter(|c| c.owner_id == user_id)
        .cloned()
    else {
        return Err(Box::new(invalid_parameter(
            "The parameter creation_id is not a container of this user.",
            None,
        )));
    };
    if container.is_carousel_item {
        return Err(Box::new(invalid_parameter(
            "A carousel item is published through its carousel.",
            None,
        )));
    }
    if container.published_id.is_some() {
        return Err(Box::new(graph_error(
            StatusCode::BAD_REQUEST,
            "This media container has already been published.",
            "OAuthException",
            100,
            Some(4_279_012),
        )));
    }
    match inner.status(&container, Instant::now()) {
        "FINISHED" => {}
        "ERROR" => {
            return Err(Box::new(graph_error(
                StatusCode::BAD_REQUEST,
                "The media container failed processing and cannot be published.",
                "OAuthException",
                100,
                Some(2_207_032),
            )))
        }
        _ => {
            return Err(Box::new(graph_error(
                StatusCode::BAD_REQUEST,
                "Media ID is not available: the container is still being processed.",
                "OAuthException",
                9007,
                Some(2_207_027),
            )))
        }
    }
    let kind = Quota::of(container.reply_to_id.is_some());
    let quota = kind.total(&state.config) as usize;
    if kind.usage(inner, user_id, state.config.quota_duration) >= quota {
        let what = match kind {
            Quota::Posts => {
                inner.quota_refusals += 1;
                "posts"
            }
            Quota::Replies => {
                inner.reply_quota_refusals += 1;
                "replies"
            }
        };
        // Facts §6.3 name the limit, not its error: the twin answers as Meta does for the same
        // limit on Instagram (subcode 2207042), under the rate-limit code 4.
        return Err(Box::new(graph_error(
            StatusCode::BAD_REQUEST,
            &format!("The user has reached the limit of {quota} API-published {what} in 24 hours."),
            "OAuthException",
            4,
            Some(2_207_042),
        )));
    }
    let media_urls = if container.media_type == "CAROUSEL" {
        container
            .children
            .iter()
            .filter_map(|c| inner.containers.get(c))
            .filter_map(|c| c.image_url.clone().or_else(|| c.video_url.clone()))
            .collect()
    } else {
        container
            .image_url
            .iter()
            .chain(container.video_url.iter())
            .cloned()
            .collect()
    };
    let id = inner.next_media_id();
    let username = inner
        .users
        .get(user_id)
        .map(|u| u.username.clone())
        .unwrap_or_default();
    inner.posts.push(Post {
        id: id.clone(),
        owner_id: user_id.to_owned(),
        username,
        container_id: container.id.clone(),
        media_type: match container.media_type.as_str() {
            "TEXT" => "TEXT_POST",
            "CAROUSEL" => "CAROUSEL_ALBUM",
            other => other,
        }
        .to_owned(),
        text: container.text.clone().unwrap_or_default(),
        media_urls,
        reply_to_id: container.reply_to_id.clone(),
        timestamp: chrono::Utc::now(),
    });
    let mut published = vec![container.id.clone()];
    published.extend(container.children.iter().cloned());
    for c in published {
        if let Some(c) = inner.containers.get_mut(&c) {
            c.published_id = Some(id.clone());
        }
    }
    Ok(id)
}

/// A post as `caller` reads it; a reply also says what it answers and whose it is.
fn post_json(inner: &Inner, post: &Post, caller: &str) -> serde_json::Value {
    let mut body = json!({
        "id": post.id,
        "media_product_type": "THREADS",
        "media_type": post.media_type,
        "text": post.text,
        "permalink": post.permalink(),
        "timestamp": graph_time(&post.timestamp),
        "username": post.username,
        "is_reply": post.reply_to_id.is_some(),
    });
    if let Some(parent) = &post.reply_to_id {
        body["is_reply_owned_by_me"] = json!(post.owner_id == caller);
        body["replied_to"] = json!({ "id": parent });
        if let Some(root) = inner.root_of(&post.id) {
            body["root_post"] = json!({ "id": root.id });
        }
    }
    body
}

/// The `since` parameter (Unix time or RFC 3339), if given; a malformed one is refused.
fn since_param(
    p: &[(String, String)],
) -> Result<Option<chrono::DateTime<chrono::Utc>>, Box<HttpResponse>> {
    match param(p, "since").map(parse_time) {
        Some(None) => Err(Box::new(invalid_parameter(
            "The parameter since is not a valid time.",
            None,
        ))),
        Some(Some(t)) => Ok(Some(t)),
        None => Ok(None),
    }
}

/// `GET /{user-id}/threads?since=&until=&limit=`: the user's posts, newest first.
pub(crate) async fn list_threads(
    state: web::Data<ThreadsState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let p = params(&req, &[]);
    let ctx = match guard(&state, &req, &p, ThreadsEndpoint::ListThreads, &[BASIC]).await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    if let Err(resp) = own_user(&path, &ctx.caller.user_id) {
        return *resp;
    }
    let since = match since_param(&p) {
        Ok(since) => since,
        Err(resp) => return *resp,
    };
    let limit = param(&p, "limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(25)
        .clamp(1, 100);
    let data: Vec<serde_json::Value> = {
        let inner = state.lock();
        inner
            .posts
            .iter()
            .rev()
            .filter(|post| post.owner_id == ctx.caller.user_id)
            .filter(|post| since.is_none_or(|s| post.timestamp >= s))
            .take(limit)
            .map(|post| post_json(&inner, post, &ctx.caller.user_id))
            .collect()
    };
    finish(
        ctx,
        HttpResponse::Ok().json(json!({ "data": data, "paging": {} })),
    )
    .await
}

/// `GET /{user-id}/threads_publishing_limit?fields=`: `quota_usage` and `config` for posts,
/// `reply_quota_usage` and `reply_config` for replies (which also need
/// threads_content_publish and threads_manage_replies, retrieve-and-manage-replies).
pub(crate) async fn publishing_limit(
    state: web::Data<ThreadsState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let p = params(&req, &[]);
    let asked = fields(&p, "quota_usage,config");
    let replies = asked
        .iter()
        .any(|f| matches!(*f, "reply_quota_usage" | "reply_config"));
    let scopes: &[&str] = if replies {
        &[BASIC, PUBLISH, MANAGE_REPLIES]
    } else {
        &[BASIC]
    };
    let ctx = match guard(&state, &req, &p, ThreadsEndpoint::PublishingLimit, scopes).await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    if let Err(resp) = own_user(&path, &ctx.caller.user_id) {
        return *resp;
    }
    let (config, duration) = (&state.config, state.config.quota_duration);
    let mut entry = json!({});
    {
        let inner = state.lock();
        let user = &ctx.caller.user_id;
        for field in asked {
            entry[field] = match field {
                "quota_usage" => json!(Quota::Posts.usage(&inner, user, duration)),
                "reply_quota_usage" => json!(Quota::Replies.usage(&inner, user, duration)),
                "config" => Quota::Posts.config(config),
                "reply_config" => Quota::Replies.config(config),
                _ => continue,
            };
        }
    }
    finish(ctx, HttpResponse::Ok().json(json!({ "data": [entry] }))).await
}

/// `GET /{id}/replies`: for a post, its direct replies (reply-management reference: `reverse`,
/// default true, lists the newest first; cursor paging with `after`), where the caller started
/// the conversation; for the caller's own user id (or `me`), the caller's replies, newest
/// first, from `since`.
pub(crate) async fn list_replies(
    state: web::Data<ThreadsState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let p = params(&req, &[]);
    let ctx = match guard(
        &state,
        &req,
        &p,
        ThreadsEndpoint::ListReplies,
        &[BASIC, READ_REPLIES],
    )
    .await
    {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let id = path.into_inner();
    let since = match since_param(&p) {
        Ok(since) => since,
        Err(resp) => return *resp,
    };
    let user = ctx.caller.user_id.clone();
    let listed: Vec<serde_json::Value> = {
        let inner = state.lock();
        let replies: Vec<&Post> = if id == "me" || id == user {
            inner
                .posts
                .iter()
                .rev()
                .filter(|post| post.owner_id == user && post.reply_to_id.is_some())
                .filter(|post| since.is_none_or(|s| post.timestamp >= s))
                .collect()
        } else {
            if inner.root_of(&id).is_none_or(|root| root.owner_id != user) {
                return no_object(&id);
            }
            let mut direct: Vec<&Post> = inner
                .posts
                .iter()
                .filter(|post| post.reply_to_id.as_deref() == Some(id.as_str()))
                .collect();
            if param(&p, "reverse") != Some("false") {
                direct.reverse();
            }
            direct
        };
        replies
            .into_iter()
            .map(|post| post_json(&inner, post, &user))
            .collect()
    };
    let (data, next) = paginate(&listed, &p);
    let body = json!({ "data": data, "paging": paging(&req, &p, next) });
    finish(ctx, HttpResponse::Ok().json(body)).await
}

/// `GET /{id}`: a container's status (`fields=status,error_message`) or a published post.
pub(crate) async fn get_object(
    state: web::Data<ThreadsState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let p = params(&req, &[]);
    let ctx = match guard(&state, &req, &p, ThreadsEndpoint::ContainerStatus, &[BASIC]).await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let id = path.into_inner();
    let body = {
        let inner = state.lock();
        let user = &ctx.caller.user_id;
        if let Some(post) = inner
            .posts
            .iter()
            .find(|p| p.id == id && &p.owner_id == user)
        {
            Some(post_json(&inner, post, user))
        } else if let Some(c) = inner.containers.get(&id).filter(|c| &c.owner_id == user) {
            let status = inner.status(c, Instant::now());
            let mut body = json!({ "id": c.id, "status": status });
            if status == "ERROR" {
                body["error_message"] = json!(c
                    .error_message
                    .clone()
                    .unwrap_or_else(|| "A carousel item failed processing.".into()));
            }
            Some(body)
        } else {
            None
        }
    };
    match body {
        Some(body) => finish(ctx, HttpResponse::Ok().json(body)).await,
        None => no_object(&id),
    }
}
