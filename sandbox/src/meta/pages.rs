//! Users, Pages and Page publishing (platform-facts §3.1, §5): `/me`, `/me/accounts`, Page
//! objects, `/feed` (text, link, `attached_media`), `/photos`, the chunked `/videos` upload and
//! reels (`/video_reels`, Reels Publishing API:
//! developers.facebook.com/docs/video-api/guides/reels-publishing).
//!
//! A reel: `upload_phase=start` answers `{video_id, upload_url}`; the bytes go to rupload
//! (`/video-upload/{v}/{video-id}`, see `rupload`); `upload_phase=finish` with `video_id`,
//! `video_state=PUBLISHED` and `description` answers `{"success": true}` and publishes the reel
//! once it has processed. `GET /{video-id}?fields=status` moves through `uploading_phase`
//! (with `bytes_transfered`, Meta's spelling), `processing_phase` and `publishing_phase`. A
//! Page publishes at most `reel_quota_total` reels in `reel_quota_window` (Meta: 30 in a moving
//! 24 hours, enforced on `/video_reels` when publishing); Meta documents no error for it, so the
//! twin answers with its throttling code 4 and says why.

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::fetch::{probe, FetchError};
use super::graph::{
    fields, graph_error, graph_error_with, graph_time, invalid_parameter, no_object, paginate,
    paging, param, params, parse_time,
};
use super::state::{
    Caller, Inner, Page, PagePost, Photo, ResumableUpload, TokenKind, Video, VideoState,
};
use super::{
    finish, guard, missing_permission, require_page_token, MetaEndpoint, MetaState, Usage,
    MAX_MESSAGE,
};
use crate::faults::{self, Fault};

/// Image types a Page photo may have.
const PHOTO_TYPES: &[&str] = &[
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/bmp",
    "image/tiff",
    "image/webp",
    "image/heic",
];
/// Video types a Page video may have.
const VIDEO_TYPES: &[&str] = &["video/mp4", "video/quicktime"];
/// Largest Page video the twin accepts.
const MAX_VIDEO_BYTES: u64 = 10 * 1024 * 1024 * 1024;
/// A text post repeated within this window is refused as a duplicate (code 506).
const DUPLICATE_WINDOW_MINUTES: i64 = 10;
/// Message of the `(#200)` error for publishing without the Page permissions or task.
const POST_PERMISSION: &str = "If posting to a page, requires both pages_read_engagement and pages_manage_posts as an admin with sufficient administrative permission";

macro_rules! guarded {
    ($state:expr, $req:expr, $p:expr, $endpoint:expr, $usage:expr) => {
        match guard($state, $req, &$p, $endpoint, $usage).await {
            Ok(ctx) => ctx,
            Err(resp) => return resp,
        }
    };
}

/// The Page `id` names (`me` is the Page a Page token acts as), if the caller may see it.
fn visible_page(inner: &Inner, caller: &Caller, id: &str) -> Result<Page, HttpResponse> {
    let id = if id == "me" {
        caller.page_id.as_deref().unwrap_or(id)
    } else {
        id
    };
    let page = inner.page(id).ok_or_else(|| no_object(id))?;
    let allowed = match &caller.page_id {
        Some(own) => own == id && page.tasks_of(&caller.user_id).is_some(),
        None => page.tasks_of(&caller.user_id).is_some(),
    };
    if allowed {
        Ok(page.clone())
    } else {
        Err(no_object(id))
    }
}

/// The Page to publish to, checked: a Page token for it, the posting permissions and the
/// `CREATE_CONTENT` task.
fn publishing_page(state: &MetaState, caller: &Caller, id: &str) -> Result<Page, HttpResponse> {
    let page = visible_page(&state.lock(), caller, id)?;
    require_page_token(caller, &page.id)?;
    if !(caller.has_scope("pages_manage_posts") && caller.has_scope("pages_read_engagement")) {
        return Err(missing_permission(200, POST_PERMISSION));
    }
    let can_create = page
        .tasks_of(&caller.user_id)
        .is_some_and(|t| t.iter().any(|t| t == "CREATE_CONTENT"));
    if !can_create {
        return Err(missing_permission(200, POST_PERMISSION));
    }
    Ok(page)
}

/// A Page's public fields.
fn page_json(page: &Page, wanted: &[&str]) -> Value {
    let mut body = json!({ "id": page.id });
    for f in wanted {
        match *f {
            "name" => body["name"] = json!(page.name),
            "category" => body["category"] = json!(page.category),
            "link" => body["link"] = json!(format!("https://www.facebook.com/{}", page.id)),
            "instagram_business_account" => {
                if let Some(ig) = &page.instagram_id {
                    body["instagram_business_account"] = json!({ "id": ig });
                }
            }
            _ => {}
        }
    }
    body
}

/// `GET /me` (or `/{user-id}`): the user, or the Page for a Page token.
pub(crate) async fn me(state: &MetaState, req: &HttpRequest, id: &str) -> HttpResponse {
    let p = params(req, &[]);
    let ctx = guarded!(state, req, p, MetaEndpoint::Me, Usage::of);
    let body = {
        let inner = state.lock();
        if let Some(page_id) = &ctx.caller.page_id {
            if id != "me" && id != page_id {
                return no_object(id);
            }
            let Some(page) = inner.page(page_id) else {
                return no_object(id);
            };
            page_json(page, &fields(&p, "id,name"))
        } else {
            if id != "me" && id != ctx.caller.user_id {
                return no_object(id);
            }
            let Some(user) = inner.users.get(&ctx.caller.user_id) else {
                return no_object(id);
            };
            let mut body = json!({"id": user.id});
            for f in fields(&p, "id,name") {
                if f == "name" {
                    body["name"] = json!(user.name);
                }
            }
            body
        }
    };
    finish(ctx, HttpResponse::Ok().json(body)).await
}

/// `GET /me/permissions`: what the user decided about each permission the app asked for
/// (granted or declined), whichever of their logins asked.
pub(crate) async fn permissions(state: &MetaState, req: &HttpRequest, id: &str) -> HttpResponse {
    let p = params(req, &[]);
    let ctx = guarded!(state, req, p, MetaEndpoint::Me, Usage::of);
    if ctx.caller.kind == TokenKind::Page || (id != "me" && id != ctx.caller.user_id) {
        return no_object(id);
    }
    let data: Vec<Value> = state
        .lock()
        .consents
        .get(&ctx.caller.user_id)
        .map(|consent| {
            consent
                .iter()
                .map(|(permission, status)| json!({"permission": permission, "status": status}))
                .collect()
        })
        .unwrap_or_default();
    finish(ctx, HttpResponse::Ok().json(json!({ "data": data }))).await
}

/// `DELETE /{user-id}/permissions/{permission}`: the user (with a user token) takes the
/// permission back from the app; every token of theirs, Page tokens included, loses it.
/// Answers `{"success": true}`, also for a permission no longer granted.
pub(crate) async fn revoke_permission(
    state: &MetaState,
    req: &HttpRequest,
    id: &str,
    permission: &str,
) -> HttpResponse {
    let p = params(req, &[]);
    let ctx = guarded!(state, req, p, MetaEndpoint::RevokePermission, Usage::of);
    if ctx.caller.kind == TokenKind::Page || (id != "me" && id != ctx.caller.user_id) {
        return no_object(id);
    }
    state.revoke_permission(&ctx.caller.user_id, permission);
    finish(ctx, HttpResponse::Ok().json(json!({"success": true}))).await
}

/// `GET /me/accounts`: the Pages the user has a role on, each with a Page token. A Page token
/// made from a long-lived user token does not expire; from a short-lived one it expires with it.
pub(crate) async fn accounts(state: &MetaState, req: &HttpRequest, id: &str) -> HttpResponse {
    let p = params(req, &[]);
    let ctx = guarded!(state, req, p, MetaEndpoint::Me, Usage::of);
    let caller = ctx.caller.clone();
    if caller.kind == TokenKind::Page {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "(#100) Tried accessing nonexisting field (accounts) on node type (Page)",
            "OAuthException",
            100,
            None,
        );
    }
    if id != "me" && id != caller.user_id {
        return no_object(id);
    }
    let wanted = fields(&p, "access_token,category,category_list,name,id,tasks");
    let (data, next) = {
        let mut inner = state.lock();
        // Without pages_show_list the app sees no Page.
        let pages: Vec<Page> = if caller.has_scope("pages_show_list") {
            inner
                .pages
                .iter()
                .filter(|pg| pg.tasks_of(&caller.user_id).is_some())
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let (page_of, next) = paginate(&pages, &p);
        let user_token_expiry = inner.tokens.get(&caller.token).and_then(|t| t.expires_at);
        let long_lived = caller.kind == TokenKind::LongUser;
        let mut data: Vec<Value> = Vec::new();
        for page in page_of {
            let mut item = json!({ "id": page.id });
            for f in &wanted {
                match *f {
                    "name" => item["name"] = json!(page.name),
                    "category" => item["category"] = json!(page.category),
                    "category_list" => {
                        item["category_list"] = json!([{"id": "2201", "name": page.category}])
                    }
                    "tasks" => item["tasks"] = json!(page.tasks_of(&caller.user_id)),
                    "instagram_business_account" => {
                        if let Some(ig) = &page.instagram_id {
                            item["instagram_business_account"] = json!({ "id": ig });
                        }
                    }
                    "access_token" => {
                        let lifetime = if long_lived {
                            None
                        } else {
                            user_token_expiry.map(|at| at.saturating_duration_since(Instant::now()))
                        };
                        let token = inner.issue_token(
                            TokenKind::Page,
                            &caller.user_id,
                            Some(&page.id),
                            lifetime,
                        );
                        item["access_token"] = json!(token);
                    }
                    _ => {}
                }
            }
            data.push(item);
        }
        (data, next)
    };
    let body = json!({ "data": data, "paging": paging(req, &p, next) });
    finish(ctx, HttpResponse::Ok().json(body)).await
}

/// `GET /{page-id}?fields=...`.
pub(crate) async fn get_page(state: &MetaState, req: &HttpRequest, id: &str) -> HttpResponse {
    let p = params(req, &[]);
    let ctx = guarded!(state, req, p, MetaEndpoint::Account, Usage::of);
    let body = {
        let mut inner = state.lock();
        let page = match visible_page(&inner, &ctx.caller, id) {
            Ok(page) => page,
            Err(resp) => return resp,
        };
        let wanted = fields(&p, "id,name");
        let mut body = page_json(&page, &wanted);
        for f in wanted {
            match f {
                "access_token" if ctx.caller.kind == TokenKind::LongUser => {
                    let token = inner.issue_token(
                        TokenKind::Page,
                        &ctx.caller.user_id,
                        Some(&page.id),
                        None,
                    );
                    body["access_token"] = json!(token);
                }
                _ => {}
            }
        }
        body
    };
    finish(ctx, HttpResponse::Ok().json(body)).await
}

/// `attached_media` as `attached_media[0]={"media_fbid":"1"}` fields or one JSON array.
fn attached_media(p: &[(String, String)]) -> Result<Vec<String>, String> {
    let mut entries: Vec<(usize, Value)> = Vec::new();
    for (k, v) in p {
        if k == "attached_media" {
            let parsed: Value = serde_json::from_str(v)
                .map_err(|_| "attached_media must be a JSON array".to_owned())?;
            let list = parsed
                .as_array()
                .ok_or("attached_media must be a JSON array")?;
            entries.extend(list.iter().cloned().enumerate());
        } else if let Some(index) = k
            .strip_prefix("attached_media[")
            .and_then(|r| r.strip_suffix(']'))
        {
            let index: usize = index
                .parse()
                .map_err(|_| format!("{k} is not an attached_media index"))?;
            let value: Value =
                serde_json::from_str(v).map_err(|_| format!("{k} must be a JSON object"))?;
            entries.push((index, value));
        }
    }
    entries.sort_by_key(|(i, _)| *i);
    entries
        .into_iter()
        .map(|(i, v)| {
            v["media_fbid"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| v["media_fbid"].as_u64().map(|n| n.to_string()))
                .ok_or_else(|| format!("attached_media[{i}] has no media_fbid"))
        })
        .collect()
}

fn new_post_id(inner: &mut Inner, page_id: &str) -> String {
    format!("{page_id}_{}", inner.next_object_id())
}

/// `POST /{page-id}/feed`: a text, link or multi-photo post.
pub(crate) async fn create_post(
    state: &MetaState,
    req: &HttpRequest,
    id: &str,
    body: &web::Bytes,
) -> HttpResponse {
    let p = params(req, body);
    let ctx = guarded!(state, req, p, MetaEndpoint::PageFeed, Usage::of);
    let page = match publishing_page(state, &ctx.caller, id) {
        Ok(page) => page,
        Err(resp) => return resp,
    };
    let message = param(&p, "message")
        .filter(|m| !m.trim().is_empty())
        .map(str::to_owned);
    if message
        .as_ref()
        .is_some_and(|m| m.chars().count() > MAX_MESSAGE)
    {
        return invalid_parameter(
            &format!("(#100) The message is too long: at most {MAX_MESSAGE} characters."),
            None,
        );
    }
    let link = param(&p, "link").map(str::to_owned);
    if let Some(link) = &link {
        let ok = url::Url::parse(link).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !ok {
            return invalid_parameter("(#100) The parameter link must be a valid URL.", None);
        }
    }
    let media = match attached_media(&p) {
        Ok(media) => media,
        Err(e) => return invalid_parameter(&format!("(#100) {e}"), None),
    };
    if media.is_empty() && message.is_none() && link.is_none() {
        return invalid_parameter(
            "(#100) The post is empty: give a message, a link or attached_media.",
            None,
        );
    }
    if !media.is_empty() && link.is_some() {
        return invalid_parameter(
            "(#100) A post cannot carry both a link and attached_media.",
            None,
        );
    }
    let post_id = {
        let mut inner = state.lock();
        // Facebook refuses the same status twice in a row on a Page.
        let recent = chrono::Utc::now() - chrono::TimeDelta::minutes(DUPLICATE_WINDOW_MINUTES);
        let duplicate = media.is_empty()
            && message.is_some()
            && inner.posts.iter().any(|post| {
                post.page_id == page.id
                    && post.created > recent
                    && post.photo_ids.is_empty()
                    && post.video_id.is_none()
                    && post.message == message
                    && post.link == link
            });
        if duplicate {
            return graph_error(
                StatusCode::BAD_REQUEST,
                "(#506) Duplicate status message",
                "OAuthException",
                506,
                None,
            );
        }
        for (i, fbid) in media.iter().enumerate() {
            let usable = inner
                .photos
                .iter()
                .any(|ph| &ph.id == fbid && ph.page_id == page.id && ph.post_id.is_none());
            if !usable {
                return invalid_parameter(
                    &format!("(#100) attached_media[{i}]: {fbid} is not an unattached photo of this Page"),
                    None,
                );
            }
        }
        let post_id = new_post_id(&mut inner, &page.id);
        for photo in inner.photos.iter_mut().filter(|ph| media.contains(&ph.id)) {
            photo.post_id = Some(post_id.clone());
            photo.published = true;
        }
        inner.posts.push(PagePost {
            id: post_id.clone(),
            page_id: page.id.clone(),
            message,
            link,
            photo_ids: media,
            video_id: None,
            created: chrono::Utc::now(),
        });
        post_id
    };
    finish(ctx, HttpResponse::Ok().json(json!({ "id": post_id }))).await
}

/// Why a media URL is not usable, as a Graph error with `code`.
fn fetch_failure(code: i64, error: FetchError) -> HttpResponse {
    let message = match error {
        FetchError::Timeout => "(#{code}) The media took too long to download.".to_owned(),
        FetchError::Unreachable(why) => format!("(#{code}) Missing or invalid media file: {why}"),
    };
    graph_error(
        StatusCode::BAD_REQUEST,
        &message.replace("{code}", &code.to_string()),
        "OAuthException",
        code,
        None,
    )
}

/// `POST /{page-id}/photos` with `url`: an unpublished photo (`published=false`) to attach to
/// a post, or a photo post at once.
pub(crate) async fn upload_photo(
    state: &MetaState,
    req: &HttpRequest,
    id: &str,
    body: &web::Bytes,
) -> HttpResponse {
    let p = params(req, body);
    let ctx = guarded!(state, req, p, MetaEndpoint::PagePhotos, Usage::of);
    let page = match publishing_page(state, &ctx.caller, id) {
        Ok(page) => page,
        Err(resp) => return resp,
    };
    let Some(url) = param(&p, "url").map(str::to_owned) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "(#324) Requires upload file: give url (the sandbox does not take multipart source)",
            "OAuthException",
            324,
            None,
        );
    };
    if matches!(ctx.fault, Some(Fault::RejectMedia)) {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "(#324) Missing or invalid image file",
            "OAuthException",
            324,
            None,
        );
    }
    let fetched = match probe(&state.http, &url).await {
        Ok(fetched) => fetched,
        Err(e) => return fetch_failure(324, e),
    };
    if !PHOTO_TYPES.contains(&fetched.content_type.as_str()) {
        return graph_error(
            StatusCode::BAD_REQUEST,
            &format!(
                "(#324) Missing or invalid image file: '{}' is not an image type Facebook takes",
                fetched.content_type
            ),
            "OAuthException",
            324,
            None,
        );
    }
    let published = param(&p, "published") != Some("false");
    let caption = param(&p, "caption")
        .or_else(|| param(&p, "message"))
        .map(str::to_owned);
    let body = {
        let mut inner = state.lock();
        let photo_id = inner.next_object_id();
        let post_id = published.then(|| new_post_id(&mut inner, &page.id));
        inner.photos.push(Photo {
            id: photo_id.clone(),
            page_id: page.id.clone(),
            url,
            caption: caption.clone(),
            published,
            post_id: post_id.clone(),
            created: chrono::Utc::now(),
        });
        match post_id {
            Some(post_id) => {
                inner.posts.push(PagePost {
                    id: post_id.clone(),
                    page_id: page.id.clone(),
                    message: caption,
                    link: None,
                    photo_ids: vec![photo_id.clone()],
                    video_id: None,
                    created: chrono::Utc::now(),
                });
                json!({ "id": photo_id, "post_id": post_id })
            }
            None => json!({ "id": photo_id }),
        }
    };
    finish(ctx, HttpResponse::Ok().json(body)).await
}

/// Parameters of a videos request, and the chunk of a transfer.
type VideoParams = (Vec<(String, String)>, Option<web::Bytes>);

/// Parameters of a videos request: query and form fields, or multipart fields plus the
/// `video_file_chunk` bytes.
fn video_params(req: &HttpRequest, body: &web::Bytes) -> Result<VideoParams, HttpResponse> {
    let content_type = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(boundary) = crate::multipart::boundary(content_type) else {
        return Ok((params(req, body), None));
    };
    let parts = crate::multipart::parse(body, &boundary)
        .map_err(|e| invalid_parameter(&format!("(#100) {e}"), None))?;
    let mut p = params(req, &[]);
    let mut chunk = None;
    for part in parts {
        if part.name == "video_file_chunk" {
            chunk = Some(part.data.clone());
        } else if let Some(text) = part.text() {
            p.push((part.name.clone(), text.to_owned()));
        }
    }
    Ok((p, chunk))
}

fn offsets(received: u64, size: u64, chunk: u64) -> (u64, u64) {
    (received, (received + chunk).min(size))
}

/// `POST /{page-id}/videos`: `upload_phase=start|transfer|finish` (Meta's chunked upload, on
/// `graph-video.facebook.com`), or `file_url` for Meta to fetch.
pub(crate) async fn videos(
    state: &MetaState,
    req: &HttpRequest,
    id: &str,
    body: &web::Bytes,
) -> HttpResponse {
    let (p, chunk) = match video_params(req, body) {
        Ok(parsed) => parsed,
        Err(resp) => return resp,
    };
    let phase = param(&p, "upload_phase").map(str::to_owned);
    let endpoint = match phase.as_deref() {
        Some("transfer") => MetaEndpoint::VideoTransfer,
        Some("finish") => MetaEndpoint::VideoFinish,
        _ => MetaEndpoint::VideoStart,
    };
    let ctx = guarded!(state, req, p, endpoint, Usage::of);
    let page = match publishing_page(state, &ctx.caller, id) {
        Ok(page) => page,
        Err(resp) => return resp,
    };
    let result = match phase.as_deref() {
        Some("start") => video_start(state, &page, &p),
        Some("transfer") => video_transfer(state, &page, &p, chunk),
        Some("finish") => video_finish(state, &page, &p, ctx.fault.as_ref()),
        Some(other) => Err(invalid_parameter(
            &format!("(#100) upload_phase must be start, transfer or finish; got {other}"),
            None,
        )),
        None => video_from_url(state, &page, &p, ctx.fault.as_ref()).await,
    };
    match result {
        Ok(body) => finish(ctx, HttpResponse::Ok().json(body)).await,
        Err(resp) => resp,
    }
}

fn video_start(
    state: &MetaState,
    page: &Page,
    p: &[(String, String)],
) -> Result<Value, HttpResponse> {
    let size = param(p, "file_size")
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| (1..=MAX_VIDEO_BYTES).contains(s))
        .ok_or_else(|| {
            invalid_parameter(
                "(#100) file_size must be the video's size in bytes (1 byte to 10 GB)",
                None,
            )
        })?;
    let mut inner = state.lock();
    let video_id = inner.next_object_id();
    let session_id = inner.next_object_id();
    inner.videos.push(Video {
        id: video_id.clone(),
        page_id: page.id.clone(),
        session_id: Some(session_id.clone()),
        file_size: size,
        received: 0,
        file_url: None,
        title: None,
        description: None,
        state: VideoState::Uploading,
        post_id: None,
        reject: false,
        processing: state.config.video_processing_delay,
        reel: false,
        upload: None,
        published_at: None,
    });
    let (start, end) = offsets(0, size, state.config.video_chunk_size);
    Ok(json!({
        "video_id": video_id,
        "upload_session_id": session_id,
        "start_offset": start.to_string(),
        "end_offset": end.to_string(),
    }))
}

fn session_video<'a>(
    inner: &'a mut Inner,
    page: &Page,
    p: &[(String, String)],
) -> Result<&'a mut Video, HttpResponse> {
    let session = param(p, "upload_session_id").unwrap_or_default();
    inner
        .videos
        .iter_mut()
        .find(|v| v.session_id.as_deref() == Some(session) && v.page_id == page.id)
        .ok_or_else(|| {
            invalid_parameter(
                "(#100) upload_session_id is not an upload session of this Page",
                None,
            )
        })
}

fn video_transfer(
    state: &MetaState,
    page: &Page,
    p: &[(String, String)],
    chunk: Option<web::Bytes>,
) -> Result<Value, HttpResponse> {
    let chunk_size = state.config.video_chunk_size;
    let mut inner = state.lock();
    let video = session_video(&mut inner, page, p)?;
    if video.state != VideoState::Uploading {
        return Err(invalid_parameter(
            "(#100) The upload session is already finished",
            None,
        ));
    }
    let Some(chunk) = chunk else {
        return Err(invalid_parameter(
            "(#100) video_file_chunk (a multipart file field) is required",
            None,
        ));
    };
    let start = param(p, "start_offset").and_then(|s| s.parse::<u64>().ok());
    if start != Some(video.received) {
        // Meta names the offset it expects in error_data (subcode 1363037).
        let (start, end) = offsets(video.received, video.file_size, chunk_size);
        return Err(graph_error_with(
            StatusCode::BAD_REQUEST,
            "There was a problem uploading your video file. Please try again.",
            "OAuthException",
            6000,
            Some(1_363_037),
            json!({
                "error_user_title": "Video Upload Time Out",
                "error_data": { "start_offset": start, "end_offset": end },
            }),
        ));
    }
    let len = chunk.len() as u64;
    if len == 0 || len > chunk_size || video.received + len > video.file_size {
        return Err(invalid_parameter(
            &format!(
                "(#100) video_file_chunk must hold 1 to {} bytes within the announced file_size",
                chunk_size.min(video.file_size - video.received)
            ),
            None,
        ));
    }
    video.received += len;
    let (start, end) = offsets(video.received, video.file_size, chunk_size);
    Ok(json!({ "start_offset": start.to_string(), "end_offset": end.to_string() }))
}

fn processing_time(state: &MetaState, fault: Option<&Fault>) -> std::time::Duration {
    match fault {
        Some(Fault::SlowProcessing { secs }) => faults::secs(*secs),
        _ => state.config.video_processing_delay,
    }
}

fn video_finish(
    state: &MetaState,
    page: &Page,
    p: &[(String, String)],
    fault: Option<&Fault>,
) -> Result<Value, HttpResponse> {
    let processing = processing_time(state, fault);
    let mut inner = state.lock();
    let video = session_video(&mut inner, page, p)?;
    let post_id = format!("{}_{}", page.id, video.id);
    if video.post_id.is_some() {
        // Finishing twice publishes once.
        return Ok(json!({ "success": true }));
    }
    if video.received < video.file_size {
        return Err(graph_error(
            StatusCode::BAD_REQUEST,
            &format!(
                "(#6000) The video upload is incomplete: {} of {} bytes received",
                video.received, video.file_size
            ),
            "OAuthException",
            6000,
            None,
        ));
    }
    video.title = param(p, "title").map(str::to_owned);
    video.description = param(p, "description").map(str::to_owned);
    video.reject = matches!(fault, Some(Fault::RejectMedia));
    video.processing = processing;
    video.state = VideoState::Processing {
        ready_at: Instant::now() + processing,
    };
    video.post_id = Some(post_id.clone());
    let post = PagePost {
        id: post_id,
        page_id: page.id.clone(),
        message: video.description.clone(),
        link: None,
        photo_ids: Vec::new(),
        video_id: Some(video.id.clone()),
        created: chrono::Utc::now(),
    };
    if video.reject {
        video.state = VideoState::Error(
            "The video could not be processed: its format is not supported.".into(),
        );
    }
    inner.posts.push(post);
    Ok(json!({ "success": true }))
}

async fn video_from_url(
    state: &MetaState,
    page: &Page,
    p: &[(String, String)],
    fault: Option<&Fault>,
) -> Result<Value, HttpResponse> {
    let Some(url) = param(p, "file_url").map(str::to_owned) else {
        return Err(invalid_parameter(
            "(#100) Give upload_phase (chunked upload) or file_url",
            None,
        ));
    };
    let fetched = probe(&state.http, &url)
        .await
        .map_err(|e| fetch_failure(351, e))?;
    if !VIDEO_TYPES.contains(&fetched.content_type.as_str()) {
        return Err(graph_error(
            StatusCode::BAD_REQUEST,
            "(#352) The video file you selected is in a format that we don't support.",
            "OAuthException",
            352,
            None,
        ));
    }
    let size = fetched.length.unwrap_or(0);
    let processing = processing_time(state, fault);
    let mut inner = state.lock();
    let video_id = inner.next_object_id();
    let post_id = format!("{}_{video_id}", page.id);
    let reject = matches!(fault, Some(Fault::RejectMedia));
    inner.videos.push(Video {
        id: video_id.clone(),
        page_id: page.id.clone(),
        session_id: None,
        file_size: size,
        received: size,
        file_url: Some(url),
        title: param(p, "title").map(str::to_owned),
        description: param(p, "description").map(str::to_owned),
        state: if reject {
            VideoState::Error(
                "The video could not be processed: its format is not supported.".into(),
            )
        } else {
            VideoState::Processing {
                ready_at: Instant::now() + processing,
            }
        },
        post_id: Some(post_id.clone()),
        reject,
        processing,
        reel: false,
        upload: None,
        published_at: None,
    });
    inner.posts.push(PagePost {
        id: post_id,
        page_id: page.id.clone(),
        message: param(p, "description").map(str::to_owned),
        link: None,
        photo_ids: Vec::new(),
        video_id: Some(video_id.clone()),
        created: chrono::Utc::now(),
    });
    Ok(json!({ "id": video_id }))
}

/// `POST /{page-id}/video_reels`: `upload_phase=start` opens a reel, `finish` publishes it.
pub(crate) async fn reels(
    state: &MetaState,
    req: &HttpRequest,
    id: &str,
    body: &web::Bytes,
) -> HttpResponse {
    let p = params(req, body);
    let phase = param(&p, "upload_phase").map(str::to_owned);
    let endpoint = match phase.as_deref() {
        Some("finish") => MetaEndpoint::ReelFinish,
        _ => MetaEndpoint::ReelStart,
    };
    let ctx = guarded!(state, req, p, endpoint, Usage::of);
    let page = match publishing_page(state, &ctx.caller, id) {
        Ok(page) => page,
        Err(resp) => return resp,
    };
    let result = match phase.as_deref() {
        Some("start") => Ok(reel_start(state, req, &page)),
        Some("finish") => reel_finish(state, &page, &p, ctx.fault.as_ref()),
        other => Err(invalid_parameter(
            &format!(
                "(#100) upload_phase must be start or finish; got {}",
                other.unwrap_or("nothing")
            ),
            None,
        )),
    };
    match result {
        Ok(body) => finish(ctx, HttpResponse::Ok().json(body)).await,
        Err(resp) => resp,
    }
}

/// Opens a reel whose bytes go to rupload; the upload URL names this twin's own host.
fn reel_start(state: &MetaState, req: &HttpRequest, page: &Page) -> Value {
    let version = req
        .match_info()
        .get("version")
        .unwrap_or("v25.0")
        .to_owned();
    let info = req.connection_info();
    let mut inner = state.lock();
    let video_id = inner.next_object_id();
    inner.videos.push(Video {
        id: video_id.clone(),
        page_id: page.id.clone(),
        session_id: None,
        file_size: 0,
        received: 0,
        file_url: None,
        title: None,
        description: None,
        state: VideoState::Uploading,
        post_id: None,
        reject: false,
        processing: state.config.video_processing_delay,
        reel: true,
        upload: Some(ResumableUpload {
            file_size: None,
            received: 0,
            checksum: 0,
            head: Vec::new(),
            processing: state.config.video_processing_delay,
        }),
        published_at: None,
    });
    json!({
        "video_id": video_id,
        "upload_url": format!(
            "{}://{}/meta/video-upload/{version}/{video_id}",
            info.scheme(),
            info.host()
        ),
    })
}

/// Publishes an uploaded reel (`video_state=PUBLISHED`), within the Page's reel limit.
fn reel_finish(
    state: &MetaState,
    page: &Page,
    p: &[(String, String)],
    fault: Option<&Fault>,
) -> Result<Value, HttpResponse> {
    let processing = processing_time(state, fault);
    let limit = state.config.reel_quota_total as usize;
    let window = chrono::TimeDelta::from_std(state.config.reel_quota_window).unwrap_or_default();
    let mut inner = state.lock();
    let video_id = param(p, "video_id").unwrap_or_default();
    let now = chrono::Utc::now();
    let published = inner
        .videos
        .iter()
        .filter(|v| v.reel && v.page_id == page.id)
        .filter(|v| v.published_at.is_some_and(|at| at > now - window))
        .count();
    let Some(video) = inner
        .videos
        .iter_mut()
        .find(|v| v.id == video_id && v.reel && v.page_id == page.id)
    else {
        return Err(invalid_parameter(
            "(#100) video_id is not a reel this Page opened with upload_phase=start",
            None,
        ));
    };
    if video.post_id.is_some() {
        // Finishing twice publishes once.
        return Ok(json!({ "success": true }));
    }
    match param(p, "video_state") {
        Some("PUBLISHED") => {}
        Some(other) => {
            return Err(invalid_parameter(
                &format!(
                    "(#100) The twin publishes reels with video_state=PUBLISHED only; got {other}"
                ),
                None,
            ))
        }
        None => {
            return Err(invalid_parameter(
                "(#100) The parameter video_state is required",
                None,
            ))
        }
    }
    let complete = video.upload.as_ref().is_some_and(|u| u.complete());
    if !complete {
        return Err(graph_error(
            StatusCode::BAD_REQUEST,
            &format!(
                "(#6000) The video upload is incomplete: {} of {} bytes received",
                video.received, video.file_size
            ),
            "OAuthException",
            6000,
            None,
        ));
    }
    if published >= limit {
        inner.reel_quota_refusals += 1;
        return Err(graph_error(
            StatusCode::BAD_REQUEST,
            &format!("(#4) This Page has published {limit} reels through the API in the last 24 hours, the most it may"),
            "OAuthException",
            4,
            None,
        ));
    }
    video.description = param(p, "description").map(str::to_owned);
    video.reject |= matches!(fault, Some(Fault::RejectMedia));
    video.processing = processing;
    video.state = if video.reject {
        VideoState::Error(
            "The video could not be processed: a reel must be an MP4 or MOV video of 3 to 90 seconds."
                .into(),
        )
    } else {
        VideoState::Processing {
            ready_at: Instant::now() + processing,
        }
    };
    video.post_id = Some(format!("{}_{}", page.id, video.id));
    video.published_at = Some(now);
    Ok(json!({ "success": true }))
}

/// Whether the caller may read objects of `page_id`.
fn may_read(inner: &Inner, caller: &Caller, page_id: &str) -> bool {
    visible_page(inner, caller, page_id).is_ok()
}

fn post_json(post: &PagePost, wanted: &[&str]) -> Value {
    let mut body = json!({ "id": post.id });
    for f in wanted {
        match *f {
            "message" => {
                if let Some(m) = &post.message {
                    body["message"] = json!(m);
                }
            }
            "created_time" => body["created_time"] = json!(graph_time(&post.created)),
            "permalink_url" => body["permalink_url"] = json!(post.permalink()),
            "link" => {
                if let Some(l) = &post.link {
                    body["link"] = json!(l);
                }
            }
            "status_type" => {
                body["status_type"] = json!(if post.video_id.is_some() {
                    "added_video"
                } else if !post.photo_ids.is_empty() {
                    "added_photos"
                } else if post.link.is_some() {
                    "shared_story"
                } else {
                    "mobile_status_update"
                })
            }
            "attachments" => {
                let data: Vec<Value> = post
                    .photo_ids
                    .iter()
                    .map(|id| json!({"type": "photo", "target": {"id": id}}))
                    .chain(
                        post.video_id
                            .iter()
                            .map(|id| json!({"type": "video_inline", "target": {"id": id}})),
                    )
                    .collect();
                if !data.is_empty() {
                    body["attachments"] = json!({ "data": data });
                }
            }
            _ => {}
        }
    }
    body
}

/// `GET /{post-id}`.
pub(crate) async fn get_post(state: &MetaState, req: &HttpRequest, id: &str) -> HttpResponse {
    let p = params(req, &[]);
    let ctx = guarded!(state, req, p, MetaEndpoint::PageObject, Usage::of);
    let body = {
        let inner = state.lock();
        let Some(post) = inner
            .posts
            .iter()
            .find(|post| post.id == id && may_read(&inner, &ctx.caller, &post.page_id))
        else {
            return no_object(id);
        };
        post_json(post, &fields(&p, "id,message,created_time"))
    };
    finish(ctx, HttpResponse::Ok().json(body)).await
}

/// `GET /{photo-id}`.
pub(crate) async fn get_photo(state: &MetaState, req: &HttpRequest, id: &str) -> HttpResponse {
    let p = params(req, &[]);
    let ctx = guarded!(state, req, p, MetaEndpoint::PageObject, Usage::of);
    let body = {
        let inner = state.lock();
        let Some(photo) = inner
            .photos
            .iter()
            .find(|ph| ph.id == id && may_read(&inner, &ctx.caller, &ph.page_id))
        else {
            return no_object(id);
        };
        let mut body = json!({ "id": photo.id, "created_time": graph_time(&photo.created) });
        if let Some(post) = &photo.post_id {
            body["page_story_id"] = json!(post);
        }
        if let Some(caption) = &photo.caption {
            body["name"] = json!(caption);
        }
        body
    };
    finish(ctx, HttpResponse::Ok().json(body)).await
}

fn video_json(video: &Video, wanted: &[&str], now: Instant) -> Value {
    let status = video.status(now);
    let mut body = json!({ "id": video.id });
    for f in wanted {
        match *f {
            "status" => {
                // A reel whose bytes are all in waits for upload_phase=finish.
                let uploaded = video.reel
                    && video.post_id.is_none()
                    && video.upload.as_ref().is_some_and(|u| u.complete());
                let status = if uploaded { "processing" } else { status };
                let (uploading, processing, publishing) = match status {
                    _ if uploaded => ("complete", "not_started", "not_started"),
                    "uploading" => ("in_progress", "not_started", "not_started"),
                    "processing" => ("complete", "in_progress", "not_started"),
                    "ready" => ("complete", "complete", "complete"),
                    _ => ("complete", "error", "not_started"),
                };
                let mut s = json!({
                    "video_status": status,
                    "uploading_phase": {"status": uploading, "bytes_transfered": video.received},
                    "processing_phase": {"status": processing},
                    "publishing_phase": {"status": publishing},
                });
                if status == "ready" {
                    s["publishing_phase"]["publish_status"] = json!("published");
                }
                if let VideoState::Error(message) = &video.state {
                    s["processing_phase"]["errors"] =
                        json!([{"code": 1363008, "message": message}]);
                }
                body["status"] = s;
            }
            // Meta gives video permalinks as a path without the host.
            "permalink_url" if video.reel => {
                body["permalink_url"] = json!(format!("/reel/{}/", video.id))
            }
            "permalink_url" => {
                body["permalink_url"] = json!(format!("/{}/videos/{}/", video.page_id, video.id))
            }
            "title" => body["title"] = json!(video.title),
            "description" => body["description"] = json!(video.description),
            "post_id" => body["post_id"] = json!(video.post_id),
            _ => {}
        }
    }
    body
}

/// `GET /{video-id}?fields=status,permalink_url`.
pub(crate) async fn get_video(state: &MetaState, req: &HttpRequest, id: &str) -> HttpResponse {
    let p = params(req, &[]);
    let ctx = guarded!(state, req, p, MetaEndpoint::PageObject, Usage::of);
    let body = {
        let inner = state.lock();
        let Some(video) = inner
            .videos
            .iter()
            .find(|v| v.id == id && may_read(&inner, &ctx.caller, &v.page_id))
        else {
            return no_object(id);
        };
        video_json(video, &fields(&p, "id"), Instant::now())
    };
    finish(ctx, HttpResponse::Ok().json(body)).await
}

/// `since` and `until` (Unix time or RFC 3339), each optional.
pub(super) type Window = (
    Option<chrono::DateTime<chrono::Utc>>,
    Option<chrono::DateTime<chrono::Utc>>,
);

/// The `since`/`until` window of a listing.
pub(super) fn window(p: &[(String, String)]) -> Result<Window, HttpResponse> {
    let mut bounds = [None, None];
    for (slot, name) in bounds.iter_mut().zip(["since", "until"]) {
        if let Some(raw) = param(p, name) {
            *slot = Some(parse_time(raw).ok_or_else(|| {
                invalid_parameter(
                    &format!("(#100) The parameter {name} is not a valid time."),
                    None,
                )
            })?);
        }
    }
    Ok((bounds[0], bounds[1]))
}

/// `GET /{page-id}/feed?since=&until=&limit=`: visible posts, newest first.
pub(crate) async fn list_feed(state: &MetaState, req: &HttpRequest, id: &str) -> HttpResponse {
    let p = params(req, &[]);
    let ctx = guarded!(state, req, p, MetaEndpoint::ListPagePosts, Usage::of);
    let (since, until) = match window(&p) {
        Ok(w) => w,
        Err(resp) => return resp,
    };
    let (data, next) = {
        let inner = state.lock();
        let page = match visible_page(&inner, &ctx.caller, id) {
            Ok(page) => page,
            Err(resp) => return resp,
        };
        let now = Instant::now();
        let wanted = fields(&p, "id,message,created_time");
        let all: Vec<Value> = inner
            .posts
            .iter()
            .rev()
            .filter(|post| post.page_id == page.id && inner.post_visible(post, now))
            .filter(|post| since.is_none_or(|s| post.created >= s))
            .filter(|post| until.is_none_or(|u| post.created <= u))
            .map(|post| post_json(post, &wanted))
            .collect();
        paginate(&all, &p)
    };
    let body = json!({ "data": data, "paging": paging(req, &p, next) });
    finish(ctx, HttpResponse::Ok().json(body)).await
}

/// `GET /{page-id}/videos`: the Page's finished uploads, newest first.
pub(crate) async fn list_videos(state: &MetaState, req: &HttpRequest, id: &str) -> HttpResponse {
    let p = params(req, &[]);
    let ctx = guarded!(state, req, p, MetaEndpoint::ListPagePosts, Usage::of);
    let (data, next) = {
        let inner = state.lock();
        let page = match visible_page(&inner, &ctx.caller, id) {
            Ok(page) => page,
            Err(resp) => return resp,
        };
        let now = Instant::now();
        let wanted = fields(&p, "id,title,description");
        let all: Vec<Value> = inner
            .videos
            .iter()
            .rev()
            .filter(|v| v.page_id == page.id && v.post_id.is_some())
            .map(|v| video_json(v, &wanted, now))
            .collect();
        paginate(&all, &p)
    };
    let body = json!({ "data": data, "paging": paging(req, &p, next) });
    finish(ctx, HttpResponse::Ok().json(body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn attached_media_in_both_encodings() {
        let indexed = pairs(&[
            ("attached_media[1]", r#"{"media_fbid":"22"}"#),
            ("attached_media[0]", r#"{"media_fbid":"11"}"#),
        ]);
        assert_eq!(attached_media(&indexed).unwrap(), ["11", "22"]);
        let array = pairs(&[("attached_media", r#"[{"media_fbid":"1"},{"media_fbid":2}]"#)]);
        assert_eq!(attached_media(&array).unwrap(), ["1", "2"]);
        assert!(attached_media(&pairs(&[("attached_media", "nope")])).is_err());
    }
}
