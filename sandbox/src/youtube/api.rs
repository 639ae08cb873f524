//! Read endpoints (`channels`, `videos`, `playlistItems`, `search`) and `thumbnails.set`.

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures::StreamExt;
use serde_json::{json, Value};

use super::quota::Cost;
use super::state::{Inner, Outcome, Video};
use super::upload::content_type;
use super::{
    bad_parameter, finish, google_error, guard, param, parts, query_pairs, random_id, Ctx,
    YouTubeEndpoint, YouTubeState, MAX_THUMBNAIL_BYTES,
};
use crate::faults::Fault;

const READ_SCOPES: &[&str] = &[
    "youtube",
    "youtube.force-ssl",
    "youtube.readonly",
    "youtubepartner",
];
const WRITE_SCOPES: &[&str] = &[
    "youtube",
    "youtube.force-ssl",
    "youtube.upload",
    "youtubepartner",
];

fn etag() -> String {
    random_id(27)
}

fn thumbnails(video_id: &str) -> Value {
    let t = |name: &str, w: u32, h: u32| json!({"url": format!("https://i.ytimg.com/vi/{video_id}/{name}.jpg"), "width": w, "height": h});
    json!({
        "default": t("default", 120, 90),
        "medium": t("mqdefault", 320, 180),
        "high": t("hqdefault", 480, 360),
    })
}

/// A `youtube#video` resource with the requested parts; `owner` adds what only the owner sees.
pub(crate) fn video_json(v: &Video, parts: &[String], owner: bool, now: Instant) -> Value {
    let m = &v.metadata;
    let has = |p: &str| parts.iter().any(|x| x == p);
    let mut body = json!({ "kind": "youtube#video", "etag": etag(), "id": v.id });
    if has("snippet") {
        let mut snippet = json!({
            "publishedAt": v.published_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "channelId": v.channel_id,
            "title": m.title,
            "description": m.description,
            "thumbnails": thumbnails(&v.id),
            "channelTitle": v.channel_title,
            "categoryId": m.category_id,
            "liveBroadcastContent": "none",
            "localized": { "title": m.title, "description": m.description },
        });
        if !m.tags.is_empty() {
            snippet["tags"] = json!(m.tags);
        }
        body["snippet"] = snippet;
    }
    if has("status") {
        let upload_status = v.upload_status(now);
        let mut status = json!({
            "uploadStatus": upload_status,
            "privacyStatus": m.privacy_status,
            "license": m.license,
            "embeddable": m.embeddable,
            "publicStatsViewable": true,
            "madeForKids": m.self_declared_made_for_kids.unwrap_or(false),
        });
        match (&v.outcome, upload_status) {
            (Outcome::Failed(reason), "failed") => status["failureReason"] = json!(reason),
            (Outcome::Rejected(reason), "rejected") => status["rejectionReason"] = json!(reason),
            _ => {}
        }
        if let Some(at) = &m.publish_at {
            status["publishAt"] = json!(at);
        }
        if owner {
            if let Some(kids) = m.self_declared_made_for_kids {
                status["selfDeclaredMadeForKids"] = json!(kids);
            }
        }
        body["status"] = status;
    }
    if has("processingDetails") && owner {
        let processed = v.processed(now);
        let mut details = json!({
            "processingStatus": match (&v.outcome, processed) {
                (_, false) => "processing",
                (Outcome::Failed(_), true) => "failed",
                _ => "succeeded",
            },
            "fileDetailsAvailability": if processed { "available" } else { "inProgress" },
            "thumbnailsAvailability": if processed { "available" } else { "inProgress" },
        });
        if !processed {
            let total = v.processing.as_millis().max(1) as u64;
            let done = now.duration_since(v.created).as_millis() as u64;
            details["processingProgress"] = json!({
                "partsTotal": 1000,
                "partsProcessed": (done * 1000 / total).min(999),
                "timeLeftMs": total.saturating_sub(done),
            });
        }
        if processed && matches!(v.outcome, Outcome::Failed(_)) {
            details["processingFailureReason"] = json!("transcodeFailed");
        }
        body["processingDetails"] = details;
    }
    if has("contentDetails") {
        body["contentDetails"] = json!({
            "duration": "PT0S", "dimension": "2d", "definition": "hd", "caption": "false",
            "licensedContent": false, "projection": "rectangular",
            "hasCustomThumbnail": v.thumbnail_bytes.is_some(),
        });
    }
    body
}

/// A read endpoint's answer: the body (after any `timeout_after_success`), or the error.
async fn respond(ctx: Ctx, result: Result<Value, Box<HttpResponse>>) -> HttpResponse {
    match result {
        Ok(body) => finish(ctx.fault.as_ref(), HttpResponse::Ok().json(body)).await,
        Err(resp) => *resp,
    }
}

/// One page of a list: the items, the next page's token, the total and the page's offset.
type Page<T> = (Vec<T>, Option<String>, u64, usize);

/// Offset pagination with opaque page tokens; returns the page and the next token.
fn paginate<T: Clone>(items: &[T], q: &[(String, String)]) -> Result<Page<T>, Box<HttpResponse>> {
    let max: usize = match param(q, "maxResults").map(str::parse::<usize>) {
        None => 5,
        Some(Ok(n)) if n <= 50 => n,
        _ => {
            return Err(Box::new(bad_parameter(
                "invalidValue",
                "maxResults must be between 0 and 50.",
            )))
        }
    };
    let offset = match param(q, "pageToken") {
        None => 0,
        Some(t) => URL_SAFE_NO_PAD
            .decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("offset:").and_then(|n| n.parse().ok()))
            .ok_or_else(|| {
                Box::new(bad_parameter(
                    "invalidPageToken",
                    "The request specifies an invalid page token.",
                ))
            })?,
    };
    let page: Vec<T> = items.iter().skip(offset).take(max).cloned().collect();
    let next = (offset + max < items.len())
        .then(|| URL_SAFE_NO_PAD.encode(format!("offset:{}", offset + max)));
    Ok((page, next, items.len() as u64, offset))
}

fn list_body(
    kind: &str,
    items: Vec<Value>,
    next: Option<String>,
    total: u64,
    per_page: usize,
) -> Value {
    let mut body = json!({
        "kind": kind,
        "etag": etag(),
        "pageInfo": { "totalResults": total, "resultsPerPage": per_page },
        "items": items,
    });
    if let Some(n) = next {
        body["nextPageToken"] = json!(n);
    }
    body
}

fn require_part(q: &[(String, String)]) -> Result<Vec<String>, Box<HttpResponse>> {
    let p = parts(q);
    if p.is_empty() {
        return Err(Box::new(bad_parameter(
            "missingRequiredParameter",
            "No filter selected. Expected one of: part",
        )));
    }
    Ok(p)
}

/// The caller's channel id, if the Google account has one.
fn caller_channel(inner: &Inner, user_id: &str) -> Option<super::state::Channel> {
    inner.users.get(user_id).and_then(|u| u.channel.clone())
}

/// `GET /youtube/v3/channels?part=snippet,contentDetails&mine=true` (or `id=`).
pub(crate) async fn channels(state: web::Data<YouTubeState>, req: HttpRequest) -> HttpResponse {
    let q = query_pairs(&req);
    let ctx = match guard(
        &state,
        &req,
        &q,
        YouTubeEndpoint::Channels,
        READ_SCOPES,
        Cost::Units(1),
    )
    .await
    {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let result = channels_body(&state, &ctx, &q);
    respond(ctx, result).await
}

fn channels_body(
    state: &YouTubeState,
    ctx: &Ctx,
    q: &[(String, String)],
) -> Result<Value, Box<HttpResponse>> {
    let parts = require_part(q)?;
    let inner = state.lock();
    let channels: Vec<(super::state::Channel, usize)> = if param(q, "mine") == Some("true") {
        caller_channel(&inner, &ctx.caller.user_id).into_iter().collect::<Vec<_>>()
    } else if let Some(ids) = param(q, "id") {
        let ids: Vec<&str> = ids.split(',').collect();
        inner
            .users
            .values()
            .filter_map(|u| u.channel.clone())
            .filter(|c| ids.contains(&c.id.as_str()))
            .collect()
    } else {
        return Err(Box::new(bad_parameter(
            "missingRequiredParameter",
            "No filter selected. Expected one of: mine, id, forHandle, forUsername, managedByMe, categoryId.",
        )));
    }
    .into_iter()
    .map(|c| {
        let count = inner.videos.iter().filter(|v| v.channel_id == c.id).count();
        (c, count)
    })
    .collect();
    let has = |p: &str| parts.iter().any(|x| x == p);
    let items: Vec<Value> = channels
        .iter()
        .map(|(c, videos)| {
            let mut item = json!({ "kind": "youtube#channel", "etag": etag(), "id": c.id });
            if has("snippet") {
                item["snippet"] = json!({
                    "title": c.title,
                    "description": "",
                    "customUrl": c.handle,
                    "publishedAt": c.published_at,
                    "thumbnails": { "default": {
                        "url": format!("https://yt3.ggpht.com/{}=s88-c-k-c0x00ffffff-no-rj", c.id),
                        "width": 88, "height": 88 } },
                    "localized": { "title": c.title, "description": "" },
                });
            }
            if has("contentDetails") {
                item["contentDetails"] =
                    json!({ "relatedPlaylists": { "likes": "LL", "uploads": c.uploads_playlist() } });
            }
            if has("statistics") {
                item["statistics"] = json!({
                    "viewCount": "0", "subscriberCount": "0", "hiddenSubscriberCount": false,
                    "videoCount": videos.to_string(),
                });
            }
            item
        })
        .collect();
    let total = items.len() as u64;
    let body = list_body("youtube#channelListResponse", items, None, total, 5);
    Ok(body)
}

/// `GET /youtube/v3/videos?part=status,processingDetails&id=a,b`.
pub(crate) async fn list_videos(state: web::Data<YouTubeState>, req: HttpRequest) -> HttpResponse {
    let q = query_pairs(&req);
    let ctx = match guard(
        &state,
        &req,
        &q,
        YouTubeEndpoint::ListVideos,
        READ_SCOPES,
        Cost::Units(1),
    )
    .await
    {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let result = list_videos_body(&state, &ctx, &q);
    respond(ctx, result).await
}

fn list_videos_body(
    state: &YouTubeState,
    ctx: &Ctx,
    q: &[(String, String)],
) -> Result<Value, Box<HttpResponse>> {
    let parts = require_part(q)?;
    let Some(ids) = param(q, "id") else {
        return Err(Box::new(bad_parameter(
            "missingRequiredParameter",
            "No filter selected. Expected one of: id, chart, myRating.",
        )));
    };
    let ids: Vec<&str> = ids
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if ids.len() > 50 {
        return Err(Box::new(bad_parameter(
            "invalidValue",
            "At most 50 video ids are allowed.",
        )));
    }
    let now = Instant::now();
    let inner = state.lock();
    let mine = caller_channel(&inner, &ctx.caller.user_id).map(|c| c.id);
    let items: Vec<Value> = ids
        .iter()
        .filter_map(|id| inner.videos.iter().find(|v| v.id == *id))
        .filter_map(|v| {
            let owner = mine.as_deref() == Some(v.channel_id.as_str());
            let visible = owner
                || (v.metadata.privacy_status != "private" && v.upload_status(now) == "processed");
            visible.then(|| video_json(v, &parts, owner, now))
        })
        .collect();
    let total = items.len() as u64;
    let per_page = items.len();
    let body = list_body("youtube#videoListResponse", items, None, total, per_page);
    Ok(body)
}

/// `GET /youtube/v3/playlistItems?part=snippet,contentDetails&playlistId=UU...`: the uploads
/// playlist, newest first.
pub(crate) async fn playlist_items(
    state: web::Data<YouTubeState>,
    req: HttpRequest,
) -> HttpResponse {
    let q = query_pairs(&req);
    let ctx = match guard(
        &state,
        &req,
        &q,
        YouTubeEndpoint::PlaylistItems,
        READ_SCOPES,
        Cost::Units(1),
    )
    .await
    {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let result = playlist_items_body(&state, &ctx, &q);
    respond(ctx, result).await
}

fn playlist_items_body(
    state: &YouTubeState,
    ctx: &Ctx,
    q: &[(String, String)],
) -> Result<Value, Box<HttpResponse>> {
    let parts = require_part(q)?;
    let Some(playlist_id) = param(q, "playlistId") else {
        return Err(Box::new(bad_parameter(
            "missingRequiredParameter",
            "No filter selected. Expected one of: playlistId, id.",
        )));
    };
    let inner = state.lock();
    let Some(channel) = inner
        .users
        .values()
        .filter_map(|u| u.channel.clone())
        .find(|c| c.uploads_playlist() == playlist_id)
    else {
        return Err(Box::new(google_error(
            StatusCode::NOT_FOUND,
            "playlistNotFound",
            "youtube.playlistItem",
            "The playlist identified with the request's <code>playlistId</code> parameter cannot be found.",
        )));
    };
    let owner = caller_channel(&inner, &ctx.caller.user_id).is_some_and(|c| c.id == channel.id);
    let videos: Vec<&Video> = inner
        .channel_videos(&channel.id)
        .into_iter()
        .filter(|v| owner || v.metadata.privacy_status == "public")
        .collect();
    let (page, next, total, offset) = paginate(&videos, q)?;
    let has = |p: &str| parts.iter().any(|x| x == p);
    let items: Vec<Value> = page
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let published = v
                .published_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let mut item =
                json!({ "kind": "youtube#playlistItem", "etag": etag(), "id": random_id(48) });
            if has("snippet") {
                item["snippet"] = json!({
                    "publishedAt": published,
                    "channelId": v.channel_id,
                    "title": v.metadata.title,
                    "description": v.metadata.description,
                    "thumbnails": thumbnails(&v.id),
                    "channelTitle": v.channel_title,
                    "playlistId": playlist_id,
                    "position": offset + i,
                    "resourceId": { "kind": "youtube#video", "videoId": v.id },
                    "videoOwnerChannelTitle": v.channel_title,
                    "videoOwnerChannelId": v.channel_id,
                });
            }
            if has("contentDetails") {
                item["contentDetails"] = json!({ "videoId": v.id, "videoPublishedAt": published });
            }
            if has("status") {
                item["status"] = json!({ "privacyStatus": v.metadata.privacy_status });
            }
            item
        })
        .collect();
    let per_page = items.len();
    let body = list_body(
        "youtube#playlistItemListResponse",
        items,
        next,
        total,
        per_page,
    );
    Ok(body)
}

/// `GET /youtube/v3/search?part=snippet&forMine=true&type=video[&q=][&publishedAfter=]`.
pub(crate) async fn search(state: web::Data<YouTubeState>, req: HttpRequest) -> HttpResponse {
    let q = query_pairs(&req);
    let ctx = match guard(
        &state,
        &req,
        &q,
        YouTubeEndpoint::Search,
        READ_SCOPES,
        Cost::Search,
    )
    .await
    {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let result = search_body(&state, &ctx, &q);
    respond(ctx, result).await
}

fn search_body(
    state: &YouTubeState,
    ctx: &Ctx,
    q: &[(String, String)],
) -> Result<Value, Box<HttpResponse>> {
    if parts(q) != ["snippet"] && parts(q) != ["id"] && parts(q) != ["id", "snippet"] {
        return Err(Box::new(bad_parameter(
            "invalidPart",
            "search.list supports part=snippet (or id).",
        )));
    }
    if param(q, "forMine") != Some("true") {
        return Err(Box::new(bad_parameter(
            "missingRequiredParameter",
            "The sandbox supports search.list only with forMine=true.",
        )));
    }
    if param(q, "type") != Some("video") {
        return Err(Box::new(bad_parameter(
            "invalidSearchFilter",
            "The request specifies forMine without setting type to video.",
        )));
    }
    let after = match param(q, "publishedAfter").map(chrono::DateTime::parse_from_rfc3339) {
        None => None,
        Some(Ok(t)) => Some(t.with_timezone(&chrono::Utc)),
        Some(Err(_)) => {
            return Err(Box::new(bad_parameter(
                "invalidPublishedAfter",
                "publishedAfter must be an RFC 3339 time.",
            )))
        }
    };
    let needle = param(q, "q").map(str::to_lowercase);
    let inner = state.lock();
    let Some(channel) = caller_channel(&inner, &ctx.caller.user_id) else {
        return Err(Box::new(google_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "youtube.search",
            "The authenticated user has no YouTube channel.",
        )));
    };
    let videos: Vec<&Video> = inner
        .channel_videos(&channel.id)
        .into_iter()
        .filter(|v| after.is_none_or(|a| v.published_at > a))
        .filter(|v| {
            needle.as_deref().is_none_or(|n| {
                v.metadata.title.to_lowercase().contains(n)
                    || v.metadata.description.to_lowercase().contains(n)
            })
        })
        .collect();
    let (page, next, total, _) = paginate(&videos, q)?;
    let items: Vec<Value> = page
        .iter()
        .map(|v| {
            let published = v
                .published_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            json!({
                "kind": "youtube#searchResult",
                "etag": etag(),
                "id": { "kind": "youtube#video", "videoId": v.id },
                "snippet": {
                    "publishedAt": published,
                    "channelId": v.channel_id,
                    "title": v.metadata.title,
                    "description": v.metadata.description,
                    "thumbnails": thumbnails(&v.id),
                    "channelTitle": v.channel_title,
                    "liveBroadcastContent": "none",
                    "publishTime": published,
                },
            })
        })
        .collect();
    let per_page = items.len();
    let body = list_body("youtube#searchListResponse", items, next, total, per_page);
    Ok(body)
}

/// `POST /upload/youtube/v3/thumbnails/set?videoId=` with the image as the body.
pub(crate) async fn set_thumbnail(
    state: web::Data<YouTubeState>,
    req: HttpRequest,
    mut payload: web::Payload,
) -> HttpResponse {
    let q = query_pairs(&req);
    let ctx = match guard(
        &state,
        &req,
        &q,
        YouTubeEndpoint::SetThumbnail,
        WRITE_SCOPES,
        Cost::Units(50),
    )
    .await
    {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let Some(video_id) = param(&q, "videoId").map(str::to_owned) else {
        return bad_parameter("missingRequiredParameter", "Required parameter: videoId");
    };
    let mime = content_type(&req);
    if !matches!(
        mime.as_str(),
        "image/jpeg" | "image/png" | "application/octet-stream"
    ) {
        return google_error(
            StatusCode::BAD_REQUEST,
            "invalidImage",
            "youtube.thumbnail",
            &format!("The provided image content is invalid: media type '{mime}' is not accepted; use image/jpeg or image/png."),
        );
    }
    let mut size: u64 = 0;
    while let Some(item) = payload.next().await {
        let Ok(bytes) = item else {
            return bad_parameter(
                "badRequest",
                "The connection closed before the image arrived.",
            );
        };
        size += bytes.len() as u64;
    }
    if size > MAX_THUMBNAIL_BYTES {
        return google_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "mediaBodyTooLarge",
            "global",
            "The thumbnail is larger than 2 MB.",
        );
    }
    if size == 0 || matches!(ctx.fault, Some(Fault::RejectMedia)) {
        return google_error(
            StatusCode::BAD_REQUEST,
            "invalidImage",
            "youtube.thumbnail",
            "The provided image content is invalid.",
        );
    }
    {
        let mut inner = state.lock();
        let mine = caller_channel(&inner, &ctx.caller.user_id).map(|c| c.id);
        let Some(video) = inner.videos.iter_mut().find(|v| v.id == video_id) else {
            return google_error(
                StatusCode::NOT_FOUND,
                "videoNotFound",
                "youtube.thumbnail",
                "The video that you are trying to insert a thumbnail image for cannot be found.",
            );
        };
        if mine.as_deref() != Some(video.channel_id.as_str()) {
            return google_error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "youtube.thumbnail",
                "The authenticated user doesn't have permissions to upload and set custom video thumbnails.",
            );
        }
        video.thumbnail_bytes = Some(size);
    }
    let body = json!({
        "kind": "youtube#thumbnailSetResponse",
        "etag": etag(),
        "items": [thumbnails(&video_id)],
    });
    finish(ctx.fault.as_ref(), HttpResponse::Ok().json(body)).await
}
