//! Instagram publishing with Facebook Login (platform-facts §4.2–§4.4): containers for images,
//! reels, stories and carousels, status polling, `media_publish` within the publishing quota,
//! `content_publishing_limit` and the account's media.

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::fetch::{probe, FetchError};
use super::graph::{
    fields, graph_error, graph_time, invalid_parameter, no_object, param, params, parse_time,
};
use super::state::{Caller, Container, IgAccount, IgMedia, Inner, ResumableUpload};
use super::{finish, guard, missing_permission, MetaEndpoint, MetaState, Usage};
use crate::faults::{self, Fault};
use crate::oauth::random_token;

pub(crate) const BASIC: &str = "instagram_basic";
pub(crate) const PUBLISH: &str = "instagram_content_publish";
/// Caption limits (facts §4.2).
const MAX_CAPTION: usize = 2200;
const MAX_HASHTAGS: usize = 30;
const MAX_MENTIONS: usize = 20;
/// Carousel size (facts §4.2).
const CAROUSEL_CHILDREN: std::ops::RangeInclusive<usize> = 2..=10;
/// Image size limit (facts §4.3, error 2207004).
const MAX_IMAGE_BYTES: u64 = 8 * 1024 * 1024;
/// Reels and carousel videos (facts §4.3: 300 MB in the current reference).
pub(crate) const MAX_REEL_BYTES: u64 = 300 * 1024 * 1024;
/// Story videos (facts §4.3).
pub(crate) const MAX_STORY_VIDEO_BYTES: u64 = 100 * 1024 * 1024;

macro_rules! guarded {
    ($state:expr, $req:expr, $p:expr, $endpoint:expr, $ig:expr) => {{
        let ig = $ig.to_owned();
        match guard($state, $req, &$p, $endpoint, move |_| Usage::Instagram(ig)).await {
            Ok(ctx) => ctx,
            Err(resp) => return resp,
        }
    }};
}

/// An Instagram error `(code, subcode)` with Meta's message (facts §4.4).
pub(crate) fn ig_error(code: i64, subcode: i64, message: &str) -> HttpResponse {
    graph_error(
        StatusCode::BAD_REQUEST,
        message,
        "OAuthException",
        code,
        Some(subcode),
    )
}

/// The account, if the caller may act for it: a Page token of the linked Page, or a user token
/// of someone with a role on that Page; with the permissions `scopes`.
pub(crate) fn account_for(
    state: &MetaState,
    caller: &Caller,
    ig_id: &str,
    scopes: &[&str],
) -> Result<IgAccount, HttpResponse> {
    let inner = state.lock();
    let account = inner.ig_account(ig_id).ok_or_else(|| no_object(ig_id))?;
    let page = inner
        .page(&account.page_id)
        .ok_or_else(|| no_object(ig_id))?;
    let linked = page.instagram_id.as_deref() == Some(ig_id);
    let allowed = match &caller.page_id {
        Some(own) => own == &page.id,
        None => true,
    } && page.tasks_of(&caller.user_id).is_some();
    if !(linked && allowed) {
        return Err(no_object(ig_id));
    }
    if scopes.iter().any(|s| !caller.has_scope(s)) {
        return Err(missing_permission(
            10,
            "Application does not have permission for this action",
        ));
    }
    Ok(account.clone())
}

/// `GET /{ig-user-id}?fields=id,username,name`.
pub(crate) async fn get_account(state: &MetaState, req: &HttpRequest, id: &str) -> HttpResponse {
    let p = params(req, &[]);
    let ctx = guarded!(state, req, p, MetaEndpoint::Account, id);
    let account = match account_for(state, &ctx.caller, id, &[BASIC]) {
        Ok(account) => account,
        Err(resp) => return resp,
    };
    let media_count = state
        .lock()
        .ig_media
        .iter()
        .filter(|m| m.ig_id == account.id)
        .count();
    let mut body = json!({ "id": account.id });
    for f in fields(&p, "id,username") {
        match f {
            "username" => body["username"] = json!(account.username),
            "name" => body["name"] = json!(account.name),
            "media_count" => body["media_count"] = json!(media_count),
            "followers_count" => body["followers_count"] = json!(0),
            "profile_picture_url" => {
                body["profile_picture_url"] = json!(format!(
                    "https://scontent.cdninstagram.com/{}.jpg",
                    account.id
                ))
            }
            _ => {}
        }
    }
    finish(ctx, HttpResponse::Ok().json(body)).await
}

/// Checks a caption's length, hashtags and @ tags.
fn check_caption(caption: &str) -> Result<(), HttpResponse> {
    let length = caption.chars().count();
    let hashtags = caption.matches('#').count();
    let mentions = caption
        .split(|c: char| c.is_whitespace())
        .filter(|w| w.starts_with('@') && w.len() > 1)
        .count();
    if length > MAX_CAPTION || hashtags > MAX_HASHTAGS {
        return Err(graph_error(
            StatusCode::BAD_REQUEST,
            &format!("The caption is too long or has too many hashtags: {length} characters and {hashtags} hashtags; the limits are {MAX_CAPTION} and {MAX_HASHTAGS}."),
            "OAuthException",
            36004,
            Some(2_207_010),
        ));
    }
    if mentions > MAX_MENTIONS {
        return Err(ig_error(
            100,
            2_207_040,
            &format!(
                "Cannot use more than {MAX_MENTIONS} tags per media; this caption has {mentions}."
            ),
        ));
    }
    Ok(())
}

/// What a container is made of.
enum Source {
    Image(String),
    Video(String),
    Carousel(Vec<String>),
    /// A video that arrives through rupload.
    Upload,
}

/// Fetches an image now, as Instagram does when the container is made: errors are immediate.
async fn check_image(state: &MetaState, url: &str) -> Result<(), HttpResponse> {
    let fetched = probe(&state.http, url).await.map_err(|e| match e {
        FetchError::Timeout => ig_error(-2, 2_207_003, "It takes too long to download the media."),
        FetchError::Unreachable(why) => ig_error(
            9004,
            2_207_052,
            &format!("Media could not be fetched from this uri: {why}"),
        ),
    })?;
    if fetched.content_type != "image/jpeg" {
        return Err(graph_error(
            StatusCode::BAD_REQUEST,
            &format!(
                "The image format is not supported: '{}'. Instagram takes JPEG images.",
                fetched.content_type
            ),
            "OAuthException",
            36001,
            Some(2_207_005),
        ));
    }
    if fetched.length.is_some_and(|l| l > MAX_IMAGE_BYTES) {
        return Err(graph_error(
            StatusCode::BAD_REQUEST,
            "The image size is too large.",
            "OAuthException",
            36000,
            Some(2_207_004),
        ));
    }
    Ok(())
}

/// Fetches a video's headers; problems show later as the container's `ERROR` status, since
/// Instagram processes videos asynchronously.
async fn video_problem(state: &MetaState, url: &str, max_bytes: u64) -> Option<(i64, String)> {
    match probe(&state.http, url).await {
        Err(FetchError::Timeout) => {
            Some((2_207_003, "It takes too long to download the media.".into()))
        }
        Err(FetchError::Unreachable(why)) => Some((
            2_207_052,
            format!("Media could not be fetched from this uri: {why}"),
        )),
        Ok(f) if !matches!(f.content_type.as_str(), "video/mp4" | "video/quicktime") => Some((
            2_207_026,
            format!(
                "The video format is not supported: '{}'. Use MOV or MP4.",
                f.content_type
            ),
        )),
        Ok(f) if f.length.is_some_and(|l| l > max_bytes) => Some((
            2_207_026,
            format!("The video is larger than {} MB.", max_bytes / (1024 * 1024)),
        )),
        Ok(_) => None,
    }
}

fn containers_in_last_day(inner: &Inner, ig_id: &str) -> usize {
    let since = chrono::Utc::now() - chrono::TimeDelta::days(1);
    inner
        .containers
        .values()
        .filter(|c| c.ig_id == ig_id && c.created > since)
        .count()
}

/// `POST /{ig-user-id}/media`: creates a container.
pub(crate) async fn create_container(
    state: &MetaState,
    req: &HttpRequest,
    id: &str,
    body: &web::Bytes,
) -> HttpResponse {
    let p = params(req, body);
    let ctx = guarded!(state, req, p, MetaEndpoint::IgCreateContainer, id);
    let account = match account_for(state, &ctx.caller, id, &[BASIC, PUBLISH]) {
        Ok(account) => account,
        Err(resp) => return resp,
    };
    let resumable = param(&p, "upload_type") == Some("resumable");
    let is_carousel_item = param(&p, "is_carousel_item") == Some("true");
    let caption = param(&p, "caption").map(str::to_owned);
    if let (Some(caption), false) = (&caption, is_carousel_item) {
        if let Err(resp) = check_caption(caption) {
            return resp;
        }
    }
    let image_url = param(&p, "image_url").map(str::to_owned);
    let video_url = param(&p, "video_url").map(str::to_owned);
    let requested = param(&p, "media_type").unwrap_or_default().to_owned();
    let (media_type, source) = match (requested.as_str(), &image_url, &video_url) {
        // facts §4.2: the video comes later through rupload.
        ("REELS" | "STORIES", _, _) if resumable && !is_carousel_item => {
            (requested.as_str(), Source::Upload)
        }
        ("VIDEO", _, _) if resumable && is_carousel_item => ("VIDEO", Source::Upload),
        _ if resumable => {
            return ig_error(
                100,
                2_207_023,
                "upload_type=resumable is for REELS, STORIES or carousel items of media_type VIDEO.",
            )
        }
        ("" | "IMAGE", Some(url), _) => ("IMAGE", Source::Image(url.clone())),
        ("" | "IMAGE", None, _) => {
            return invalid_parameter("The parameter image_url is required.", None)
        }
        ("VIDEO", _, Some(url)) if is_carousel_item => ("VIDEO", Source::Video(url.clone())),
        ("VIDEO", _, _) if !is_carousel_item => {
            return ig_error(
                100,
                2_207_023,
                "The media type VIDEO is only for carousel items; publish a single video as REELS.",
            )
        }
        ("REELS", _, Some(url)) if !is_carousel_item => ("REELS", Source::Video(url.clone())),
        ("STORIES", _, Some(url)) if !is_carousel_item => ("STORIES", Source::Video(url.clone())),
        ("STORIES", Some(url), None) if !is_carousel_item => {
            ("STORIES", Source::Image(url.clone()))
        }
        ("CAROUSEL", _, _) if !is_carousel_item => {
            let children: Vec<String> = param(&p, "children")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            ("CAROUSEL", Source::Carousel(children))
        }
        ("REELS" | "STORIES" | "CAROUSEL", _, _) if is_carousel_item => {
            return ig_error(
                100,
                2_207_023,
                "A carousel item is an image (image_url) or a VIDEO (video_url).",
            )
        }
        ("VIDEO" | "REELS" | "STORIES", _, None) => {
            return invalid_parameter("The parameter video_url is required.", None)
        }
        _ => {
            return ig_error(
                100,
                2_207_023,
                "The media type is unknown: use IMAGE, VIDEO (carousel items), REELS, STORIES or CAROUSEL.",
            )
        }
    };
    let now = Instant::now();
    let mut ready_at = now;
    let mut error = None;
    let mut children = Vec::new();
    match &source {
        Source::Image(url) => {
            if let Err(resp) = check_image(state, url).await {
                return resp;
            }
        }
        Source::Video(url) => {
            let max = if media_type == "STORIES" {
                MAX_STORY_VIDEO_BYTES
            } else {
                MAX_REEL_BYTES
            };
            error = video_problem(state, url, max).await;
            ready_at = now + state.config.ig_video_processing_delay;
        }
        Source::Carousel(ids) => {
            if !CAROUSEL_CHILDREN.contains(&ids.len()) {
                return ig_error(
                    100,
                    2_207_028,
                    &format!(
                        "Carousels need 2 to 10 photos or videos; got {}.",
                        ids.len()
                    ),
                );
            }
            let inner = state.lock();
            let bad = ids.iter().find(|child| {
                !inner.containers.get(*child).is_some_and(|c| {
                    c.ig_id == account.id
                        && c.is_carousel_item
                        && c.published_id.is_none()
                        && now < c.expires_at
                })
            });
            if let Some(bad) = bad {
                return ig_error(
                    24,
                    2_207_006,
                    &format!("The media with id {bad} cannot be found: it is not an unpublished carousel item of this account."),
                );
            }
            children = ids.clone();
        }
        // Processing starts once every byte is in (see `rupload`).
        Source::Upload => ready_at = now + state.config.ig_container_lifetime,
    }
    let mut processing = state.config.ig_video_processing_delay;
    match &ctx.fault {
        Some(Fault::SlowProcessing { secs }) if resumable => processing = faults::secs(*secs),
        Some(Fault::SlowProcessing { secs }) => ready_at = now + faults::secs(*secs),
        Some(Fault::RejectMedia) => {
            error = Some(match source {
                Source::Image(_) => (2_207_005, "The image format is not supported.".to_owned()),
                _ => (2_207_026, "The video format is not supported.".to_owned()),
            })
        }
        _ => {}
    }
    let id = {
        let mut inner = state.lock();
        if containers_in_last_day(&inner, &account.id) >= state.config.ig_container_limit {
            return graph_error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "(#4) The account created the maximum of {} containers in 24 hours.",
                    state.config.ig_container_limit
                ),
                "OAuthException",
                4,
                None,
            );
        }
        let id = inner.next_ig_media_id();
        inner.containers.insert(
            id.clone(),
            Container {
                id: id.clone(),
                ig_id: account.id.clone(),
                media_type: media_type.to_owned(),
                image_url,
                video_url,
                caption: if is_carousel_item { None } else { caption },
                children,
                is_carousel_item,
                share_to_feed: param(&p, "share_to_feed") != Some("false"),
                created: chrono::Utc::now(),
                expires_at: now + state.config.ig_container_lifetime,
                ready_at,
                error,
                published_id: None,
                upload: resumable.then(|| ResumableUpload {
                    processing,
                    ..ResumableUpload::default()
                }),
            },
        );
        inner.container_order.push(id.clone());
        id
    };
    let mut body = json!({ "id": id });
    if resumable {
        // facts §4.2: `https://rupload.facebook.com/ig-api-upload/v25.0/<IG_CONTAINER_ID>`; the
        // twin serves it itself.
        let info = req.connection_info().clone();
        let version = req.match_info().get("version").unwrap_or("v25.0");
        body["uri"] = json!(format!(
            "{}://{}/meta/ig-api-upload/{version}/{id}",
            info.scheme(),
            info.host()
        ));
    }
    finish(ctx, HttpResponse::Ok().json(body)).await
}

/// `GET /{container-id}?fields=status_code,status`.
pub(crate) async fn container_status(
    state: &MetaState,
    req: &HttpRequest,
    id: &str,
) -> HttpResponse {
    let p = params(req, &[]);
    let owner = state
        .lock()
        .containers
        .get(id)
        .map(|c| c.ig_id.clone())
        .unwrap_or_default();
    let ctx = guarded!(state, req, p, MetaEndpoint::IgContainerStatus, owner);
    if let Err(resp) = account_for(state, &ctx.caller, &owner, &[BASIC]) {
        return resp;
    }
    let body = {
        let inner = state.lock();
        let Some(container) = inner.containers.get(id) else {
            return no_object(id);
        };
        let (code, error) = inner.container_status(container, Instant::now());
        let status = match (code, &error) {
            ("FINISHED", _) => {
                "Finished: Media has been uploaded and it is ready to be published.".to_owned()
            }
            ("IN_PROGRESS", _) => "In Progress: Media is still being processed.".to_owned(),
            ("EXPIRED", _) => {
                "Expired: The media container was not published within 24 hours.".to_owned()
            }
            ("PUBLISHED", _) => "Published: Media has been published.".to_owned(),
            (_, Some((subcode, message))) => {
                format!("Error: {message} Media upload has failed with error code {subcode}.")
            }
            _ => "Error: Media upload has failed.".to_owned(),
        };
        let mut body = json!({ "id": container.id });
        for f in fields(&p, "id,status_code") {
            match f {
                "status_code" => body["status_code"] = json!(code),
                "status" => body["status"] = json!(status),
                _ => {}
            }
        }
        body
    };
    finish(ctx, HttpResponse::Ok().json(body)).await
}

/// `POST /{ig-user-id}/media_publish?creation_id=`: publishes a FINISHED container, once.
pub(crate) async fn publish(
    state: &MetaState,
    req: &HttpRequest,
    id: &str,
    body: &web::Bytes,
) -> HttpResponse {
    let p = params(req, body);
    let ctx = guarded!(state, req, p, MetaEndpoint::IgPublish, id);
    let account = match account_for(state, &ctx.caller, id, &[BASIC, PUBLISH]) {
        Ok(account) => account,
        Err(resp) => return resp,
    };
    let creation_id = param(&p, "creation_id").unwrap_or_default().to_owned();
    if let Some(Fault::SlowProcessing { secs }) = &ctx.fault {
        // A slow publish: the quota is judged once it is done.
        tokio::time::sleep(faults::secs(*secs)).await;
    }
    let result = {
        let mut inner = state.lock();
        publish_container(state, &mut inner, &account, &creation_id)
    };
    match result {
        Ok(media_id) => finish(ctx, HttpResponse::Ok().json(json!({ "id": media_id }))).await,
        Err(resp) => *resp,
    }
}

fn publish_container(
    state: &MetaState,
    inner: &mut Inner,
    account: &IgAccount,
    creation_id: &str,
) -> Result<String, Box<HttpResponse>> {
    let Some(container) = inner
        .containers
        .get(creation_id)
        .filter(|c| c.ig_id == account.id)
        .cloned()
    else {
        return Err(Box::new(ig_error(
            24,
            2_207_006,
            &format!("The media with id {creation_id} cannot be found."),
        )));
    };
    if container.is_carousel_item {
        return Err(Box::new(invalid_parameter(
            "A carousel item is published through its carousel container.",
            None,
        )));
    }
    match inner.container_status(&container, Instant::now()) {
        ("FINISHED", _) => {}
        ("PUBLISHED", _) => {
            return Err(Box::new(invalid_parameter(
                "The media container has already been published.",
                None,
            )))
        }
        ("EXPIRED", _) => {
            return Err(Box::new(ig_error(
                -2,
                2_207_020,
                "The media you are trying to access has expired. Please try to upload again.",
            )))
        }
        ("IN_PROGRESS", _) => {
            return Err(Box::new(ig_error(
                9007,
                2_207_027,
                "Media ID is not available: the media is not ready for publishing, please wait for a moment.",
            )))
        }
        _ => {
            return Err(Box::new(ig_error(
                -1,
                2_207_032,
                "Create media fail, please try to re-create media",
            )))
        }
    }
    let quota = state.config.ig_quota_total as usize;
    if inner.quota_usage(&account.id, state.config.ig_quota_duration, None) >= quota {
        inner.ig_quota_refusals += 1;
        return Err(Box::new(ig_error(
            9,
            2_207_042,
            "You reached maximum number of posts that is allowed to be published by Content Publishing API.",
        )));
    }
    let media_urls: Vec<String> = if container.media_type == "CAROUSEL" {
        container
            .children
            .iter()
            .filter_map(|c| inner.containers.get(c))
            .filter_map(|c| c.media_url())
            .collect()
    } else {
        container.media_url().into_iter().collect()
    };
    let (media_type, product) = match container.media_type.as_str() {
        "CAROUSEL" => ("CAROUSEL_ALBUM", "FEED"),
        "REELS" => ("VIDEO", "REELS"),
        "STORIES" if container.image_url.is_none() => ("VIDEO", "STORY"),
        "STORIES" => ("IMAGE", "STORY"),
        _ => ("IMAGE", "FEED"),
    };
    let media_id = inner.next_ig_media_id();
    inner.ig_media.push(IgMedia {
        id: media_id.clone(),
        ig_id: account.id.clone(),
        username: account.username.clone(),
        container_id: container.id.clone(),
        media_type: media_type.to_owned(),
        media_product_type: product.to_owned(),
        caption: container.caption.clone().unwrap_or_default(),
        media_urls,
        shortcode: random_token(8),
        timestamp: chrono::Utc::now(),
    });
    let mut published = vec![container.id.clone()];
    published.extend(container.children.iter().cloned());
    for c in published {
        if let Some(c) = inner.containers.get_mut(&c) {
            c.published_id = Some(media_id.clone());
        }
    }
    Ok(media_id)
}

/// `GET /{ig-user-id}/content_publishing_limit?fields=quota_usage,config&since=`.
pub(crate) async fn publishing_limit(
    state: &MetaState,
    req: &HttpRequest,
    id: &str,
) -> HttpResponse {
    let p = params(req, &[]);
    let ctx = guarded!(state, req, p, MetaEndpoint::IgPublishingLimit, id);
    let account = match account_for(state, &ctx.caller, id, &[BASIC]) {
        Ok(account) => account,
        Err(resp) => return resp,
    };
    let since = match param(&p, "since").map(parse_time) {
        Some(None) => return invalid_parameter("The parameter since is not a valid time.", None),
        Some(Some(t)) if t < chrono::Utc::now() - chrono::TimeDelta::days(1) => {
            return invalid_parameter(
                "The parameter since must be within the last 24 hours.",
                None,
            )
        }
        Some(t) => t,
        None => None,
    };
    let usage = state
        .lock()
        .quota_usage(&account.id, state.config.ig_quota_duration, since);
    let mut entry = json!({});
    for f in fields(&p, "quota_usage") {
        match f {
            "quota_usage" => entry["quota_usage"] = json!(usage),
            "config" => {
                entry["config"] = json!({
                    "quota_total": state.config.ig_quota_total,
                    "quota_duration": state.config.ig_quota_duration.as_secs(),
                })
            }
            _ => {}
        }
    }
    finish(ctx, HttpResponse::Ok().json(json!({ "data": [entry] }))).await
}

fn media_json(media: &IgMedia, wanted: &[&str]) -> Value {
    let mut body = json!({ "id": media.id });
    for f in wanted {
        match *f {
            "caption" => body["caption"] = json!(media.caption),
            "media_type" => body["media_type"] = json!(media.media_type),
            "media_product_type" => body["media_product_type"] = json!(media.media_product_type),
            "permalink" => body["permalink"] = json!(media.permalink()),
            "shortcode" => body["shortcode"] = json!(media.shortcode),
            "timestamp" => body["timestamp"] = json!(graph_time(&media.timestamp)),
            "username" => body["username"] = json!(media.username),
            "media_url" => body["media_url"] = json!(media.media_urls.first()),
            _ => {}
        }
    }
    body
}

/// `GET /{ig-user-id}/media` (feed and reels) or `/stories` (stories of the last 24 hours),
/// newest first.
pub(crate) async fn list_media(
    state: &MetaState,
    req: &HttpRequest,
    id: &str,
    stories: bool,
) -> HttpResponse {
    let p = params(req, &[]);
    let ctx = guarded!(state, req, p, MetaEndpoint::IgListMedia, id);
    let account = match account_for(state, &ctx.caller, id, &[BASIC]) {
        Ok(account) => account,
        Err(resp) => return resp,
    };
    let (since, until) = match super::pages::window(&p) {
        Ok(w) => w,
        Err(resp) => return resp,
    };
    let limit = param(&p, "limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(25)
        .clamp(1, 100);
    let story_window = chrono::Utc::now() - chrono::TimeDelta::days(1);
    let wanted = fields(&p, "id");
    let data: Vec<Value> = state
        .lock()
        .ig_media
        .iter()
        .rev()
        .filter(|m| m.ig_id == account.id)
        .filter(|m| (m.media_product_type == "STORY") == stories)
        .filter(|m| !stories || m.timestamp > story_window)
        .filter(|m| since.is_none_or(|s| m.timestamp >= s))
        .filter(|m| until.is_none_or(|u| m.timestamp <= u))
        .take(limit)
        .map(|m| media_json(m, &wanted))
        .collect();
    finish(
        ctx,
        HttpResponse::Ok().json(json!({ "data": data, "paging": {"cursors": {}} })),
    )
    .await
}

/// `GET /{ig-media-id}?fields=permalink,...`.
pub(crate) async fn get_media(state: &MetaState, req: &HttpRequest, id: &str) -> HttpResponse {
    let p = params(req, &[]);
    let owner = state
        .lock()
        .ig_media
        .iter()
        .find(|m| m.id == id)
        .map(|m| m.ig_id.clone())
        .unwrap_or_default();
    let ctx = guarded!(state, req, p, MetaEndpoint::IgListMedia, owner);
    if let Err(resp) = account_for(state, &ctx.caller, &owner, &[BASIC]) {
        return resp;
    }
    let body = {
        let inner = state.lock();
        let Some(media) = inner.ig_media.iter().find(|m| m.id == id) else {
            return no_object(id);
        };
        media_json(media, &fields(&p, "id"))
    };
    finish(ctx, HttpResponse::Ok().json(body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captions_are_checked() {
        assert!(check_caption("hello #one @two").is_ok());
        assert!(check_caption(&"x".repeat(2201)).is_err());
        assert!(check_caption(&"#t ".repeat(31)).is_err());
        assert!(check_caption(&"@u ".repeat(21)).is_err());
    }
}
