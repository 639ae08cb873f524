//! Reddit's account, submit, media-lease, flair and listing endpoints (platform-facts §9.2).

use std::time::Instant;

use actix_web::http::header::{CONTENT_TYPE, LOCATION};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::state::{Asset, GalleryItem, Post};
use super::{
    finish, guard, json_errors, origin, param, params, reddit_error, Ctx, LinkType, RedditEndpoint,
    RedditState, RedditSubreddit, MAX_TEXT, MAX_TITLE,
};
use crate::faults::{self, Fault};
use crate::multipart;
use crate::oauth::random_token;
use crate::twin::Twin as _;

const IMAGE_TYPES: &[&str] = &["image/png", "image/jpeg", "image/gif"];
const VIDEO_TYPES: &[&str] = &["video/mp4", "video/quicktime"];
/// Longest caption of a gallery item (r/modnews: "an optional caption (180 character max)").
const MAX_CAPTION: usize = 180;

/// `GET /api/v1/me` (`identity`).
pub(crate) async fn me(state: web::Data<RedditState>, req: HttpRequest) -> HttpResponse {
    let ctx = match guard(&state, &req, RedditEndpoint::Me, "identity").await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let user = state.lock().user(&ctx.caller.username);
    let body = json!({
        "name": user.name,
        "id": user.id,
        "created_utc": user.created_utc as f64,
        "link_karma": 1,
        "comment_karma": 1,
        "has_verified_email": true,
        "is_suspended": false,
        "icon_img": "",
    });
    finish(&ctx, HttpResponse::Ok().json(body)).await
}

/// `true`-ish form values as Reddit reads them.
fn truthy(value: Option<&str>) -> bool {
    matches!(value, Some("true" | "1" | "on" | "True"))
}

/// The uploaded asset of `owner` that `url` points at (an image or video submission's `url`,
/// a video's `video_poster_url`); its index.
fn uploaded_asset(state: &RedditState, owner: &str, url: &str) -> Option<usize> {
    let decoded = url.replace("%2F", "/").replace("%2f", "/");
    state.lock().assets.iter().position(|a| {
        a.owner == owner && a.location.is_some() && decoded.ends_with(&format!("/{}", a.key))
    })
}

fn is_video(mimetype: &str) -> bool {
    VIDEO_TYPES.contains(&mimetype)
}

/// `POST /api/submit` (`submit`): the validators of `POST_submit`, answered in the
/// `api_type=json` envelope with HTTP 200, as Reddit does.
pub(crate) async fn submit(
    state: web::Data<RedditState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let ctx = match guard(&state, &req, RedditEndpoint::Submit, "submit").await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let p = params(&req, &body);
    match validate_and_create(&state, &req, &ctx, &p) {
        Ok(resp) | Err(resp) => finish(&ctx, resp).await,
    }
}

/// The checks every submission passes first: the caller may post, and to this subreddit.
fn check_poster_and_subreddit(
    state: &RedditState,
    ctx: &Ctx,
    sr_name: &str,
) -> Result<RedditSubreddit, HttpResponse> {
    let user = &ctx.caller.username;
    if let Some(Fault::ContentRejected { detail }) = &ctx.fault {
        return Err(json_errors(&[(
            "SUBMIT_VALIDATION_BODY_BLACKLISTED_STRING",
            detail,
            "text",
        )]));
    }
    if state.config.users_in_timeout.contains(user) {
        return Err(json_errors(&[(
            "IN_TIMEOUT",
            "you can't do that while you are in timeout",
            "",
        )]));
    }
    if state.config.users_needing_captcha.contains(user) {
        return Err(json_errors(&[(
            "BAD_CAPTCHA",
            "care to try these again?",
            "captcha",
        )]));
    }
    let sr_name = sr_name.trim();
    if sr_name.is_empty() {
        return Err(json_errors(&[(
            "SUBREDDIT_REQUIRED",
            "you must specify a subreddit",
            "sr",
        )]));
    }
    let Some(sr) = state.subreddit(sr_name).cloned() else {
        return Err(json_errors(&[(
            "SUBREDDIT_NOEXIST",
            "that subreddit doesn't exist",
            "sr",
        )]));
    };
    if sr.restricted && !sr.approved.contains(user) {
        return Err(json_errors(&[(
            "SUBREDDIT_NOTALLOWED",
            "you aren't allowed to post there.",
            "sr",
        )]));
    }
    Ok(sr)
}

/// The title, checked (`VTitle`).
fn check_title(title: &str) -> Result<String, HttpResponse> {
    let title = title.trim().to_owned();
    if title.is_empty() {
        return Err(json_errors(&[(
            "NO_TEXT",
            "we need something here",
            "title",
        )]));
    }
    if title.chars().count() > MAX_TITLE {
        return Err(json_errors(&[(
            "TOO_LONG",
            "this is too long (max: 300)",
            "title",
        )]));
    }
    Ok(title)
}

/// The flair template named by id or text; a subreddit that requires flair refuses none.
fn check_flair(
    sr: &RedditSubreddit,
    flair_id: Option<&str>,
    flair_text: Option<&str>,
) -> Result<Option<(String, String)>, HttpResponse> {
    let unknown = || {
        json_errors(&[(
            "INVALID_FLAIR_TEMPLATE_ID",
            "that flair template doesn't exist",
            "flair",
        )])
    };
    let template = match (
        flair_id.filter(|s| !s.is_empty()),
        flair_text.filter(|s| !s.is_empty()),
    ) {
        (Some(id), _) => Some(
            sr.flairs
                .iter()
                .find(|(fid, _)| fid == id)
                .cloned()
                .ok_or_else(unknown)?,
        ),
        (None, Some(text)) => Some(
            sr.flairs
                .iter()
                .find(|(_, t)| t == text)
                .cloned()
                .ok_or_else(unknown)?,
        ),
        (None, None) => None,
    };
    if sr.flair_required && template.is_none() {
        return Err(json_errors(&[(
            "SUBMIT_VALIDATION_FLAIR_REQUIRED",
            "Your post must contain post flair.",
            "flair",
        )]));
    }
    Ok(template)
}

/// Counts the submission against the user's posting throttle (`RATELIMIT` when spent).
fn check_ratelimit(state: &RedditState, user: &str) -> Result<(), HttpResponse> {
    let Err(wait) = state.count_submit(user) else {
        return Ok(());
    };
    let secs = wait.as_secs_f64().max(1.0);
    let message = if secs >= 60.0 {
        format!(
            "you are doing that too much. try again in {} minutes.",
            (secs / 60.0).ceil() as u64
        )
    } else {
        format!(
            "you are doing that too much. try again in {} seconds.",
            secs.ceil() as u64
        )
    };
    Err(HttpResponse::Ok().json(json!({"json": {
        "ratelimit": secs,
        "errors": [["RATELIMIT", message, "ratelimit"]],
    }})))
}

/// A subreddit setting that refuses this kind of post.
fn not_allowed(what: &str) -> HttpResponse {
    json_errors(&[(
        "INVALID_OPTION",
        &format!("this community doesn't allow {what}"),
        "sr",
    )])
}

fn validate_and_create(
    state: &RedditState,
    req: &HttpRequest,
    ctx: &Ctx,
    p: &[(String, String)],
) -> Result<HttpResponse, HttpResponse> {
    let user = ctx.caller.username.clone();
    let sr = check_poster_and_subreddit(state, ctx, param(p, "sr").unwrap_or_default())?;
    let kind = param(p, "kind").unwrap_or_default();
    if !matches!(kind, "self" | "link" | "image" | "video" | "videogif") {
        return Err(json_errors(&[(
            "INVALID_OPTION",
            "that option is not allowed",
            "kind",
        )]));
    }
    match (kind, sr.link_type) {
        ("self", LinkType::LinkOnly) => {
            return Err(json_errors(&[(
                "NO_SELFS",
                "that subreddit doesn't allow text posts",
                "sr",
            )]))
        }
        ("link" | "image" | "video" | "videogif", LinkType::SelfOnly) => {
            return Err(json_errors(&[(
                "NO_LINKS",
                "that subreddit only allows text posts",
                "sr",
            )]))
        }
        ("image", _) if !sr.allow_images => return Err(not_allowed("images")),
        ("video" | "videogif", _) if !sr.allow_videos => return Err(not_allowed("videos")),
        _ => {}
    }
    let title = check_title(param(p, "title").unwrap_or_default())?;
    let text = param(p, "text").unwrap_or_default().to_owned();
    if kind == "self" && text.chars().count() > MAX_TEXT {
        return Err(json_errors(&[(
            "TOO_LONG",
            "this is too long (max: 40000)",
            "text",
        )]));
    }
    let url = param(p, "url").unwrap_or_default().trim().to_owned();
    let mut asset = None;
    let mut video = None;
    if kind == "link" {
        if url.is_empty() {
            return Err(json_errors(&[("NO_URL", "a url is required", "url")]));
        }
        let Some(parsed) = url::Url::parse(&url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        else {
            return Err(json_errors(&[(
                "BAD_URL",
                "you should check that url",
                "url",
            )]));
        };
        let host = parsed.host_str().unwrap_or_default();
        if sr
            .banned_domains
            .iter()
            .any(|d| host == d || host.ends_with(&format!(".{d}")))
        {
            return Err(json_errors(&[(
                "DOMAIN_BANNED",
                "that domain has been banned here",
                "url",
            )]));
        }
        let already = state.lock().posts.iter().any(|post| {
            post.subreddit.eq_ignore_ascii_case(&sr.name) && post.url.as_deref() == Some(&url)
        });
        if already && !truthy(param(p, "resubmit")) {
            return Err(json_errors(&[(
                "ALREADY_SUB",
                "that link has already been submitted",
                "url",
            )]));
        }
    }
    if kind == "image" {
        let index = uploaded_asset(state, &user, &url)
            .filter(|i| !is_video(&state.lock().assets[*i].mimetype));
        match index {
            Some(index) => asset = Some(index),
            None => {
                return Err(json_errors(&[(
                    "BAD_URL",
                    "you should check that url: it is not an image you uploaded",
                    "url",
                )]))
            }
        }
    }
    if matches!(kind, "video" | "videogif") {
        let index = uploaded_asset(state, &user, &url)
            .filter(|i| is_video(&state.lock().assets[*i].mimetype));
        let Some(index) = index else {
            return Err(json_errors(&[(
                "BAD_URL",
                "you should check that url: it is not a video you uploaded",
                "url",
            )]));
        };
        let poster = param(p, "video_poster_url").unwrap_or_default().trim();
        if poster.is_empty() {
            return Err(json_errors(&[(
                "NO_URL",
                "a video post needs a poster image",
                "video_poster_url",
            )]));
        }
        let poster_is_image = uploaded_asset(state, &user, poster)
            .is_some_and(|i| !is_video(&state.lock().assets[i].mimetype));
        if !poster_is_image {
            return Err(json_errors(&[(
                "BAD_URL",
                "you should check that url: the poster is not an image you uploaded",
                "video_poster_url",
            )]));
        }
        asset = Some(index);
        video = Some((
            state.lock().assets[index].asset_id.clone(),
            poster.to_owned(),
        ));
    }
    let template = check_flair(&sr, param(p, "flair_id"), param(p, "flair_text"))?;
    check_ratelimit(state, &user)?;
    let delay = match kind {
        "image" => state.config.image_processing_delay,
        "video" | "videogif" => state.config.video_processing_delay,
        _ => std::time::Duration::ZERO,
    };
    let mut inner = state.lock();
    let id = inner.next_post_id();
    let post = Post {
        id: id.clone(),
        author: user.clone(),
        subreddit: sr.name.clone(),
        kind: kind.to_owned(),
        title,
        text: if kind == "self" { text } else { String::new() },
        url: (kind != "self").then_some(url),
        flair_id: template.as_ref().map(|t| t.0.clone()),
        flair_text: template.map(|t| t.1),
        nsfw: truthy(param(p, "nsfw")),
        spoiler: truthy(param(p, "spoiler")),
        created: chrono::Utc::now(),
        visible_at: Instant::now() + delay,
        gallery: vec![],
        video,
    };
    let permalink = post.permalink();
    inner.posts.push(post);
    let base = format!("{}/reddit", origin(req));
    if let Some(index) = asset {
        let asset_id = inner.assets[index].asset_id.clone();
        let websocket_url = format!(
            "wss://ws-sandbox.invalid/rte_images/{asset_id}?m={}",
            random_token(12)
        );
        // Image and video posts answer with a websocket to wait on, not with the post; a
        // video's answer has nothing else (PRAW's recorded `submit_video`).
        let data = if kind == "image" {
            json!({
                "user_submitted_page": format!("{base}/user/{user}/submitted/"),
                "websocket_url": websocket_url,
            })
        } else {
            json!({ "websocket_url": websocket_url })
        };
        return Ok(HttpResponse::Ok().json(json!({"json": {"errors": [], "data": data}})));
    }
    Ok(
        HttpResponse::Ok().json(json!({"json": {"errors": [], "data": {
            "url": format!("{base}{permalink}"),
            "drafts_count": 0,
            "id": id,
            "name": format!("t3_{id}"),
        }}})),
    )
}

/// `POST /api/submit_gallery_post.json` (`submit`): a JSON body with `sr`, `title` and
/// `items: [{media_id, caption, outbound_url}]` naming uploaded images; answered with the
/// post's `url` and fullname `id`, as Reddit does.
pub(crate) async fn submit_gallery(
    state: web::Data<RedditState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let ctx = match guard(&state, &req, RedditEndpoint::SubmitGallery, "submit").await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let resp = match serde_json::from_slice::<Value>(&body) {
        Ok(json) if json.is_object() => match create_gallery(&state, &req, &ctx, &json) {
            Ok(resp) | Err(resp) => resp,
        },
        _ => reddit_error(StatusCode::BAD_REQUEST, "the body must be a JSON object"),
    };
    finish(&ctx, resp).await
}

fn create_gallery(
    state: &RedditState,
    req: &HttpRequest,
    ctx: &Ctx,
    body: &Value,
) -> Result<HttpResponse, HttpResponse> {
    let user = ctx.caller.username.clone();
    let text = |name: &str| body.get(name).and_then(Value::as_str).unwrap_or_default();
    let flag = |name: &str| match body.get(name) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => truthy(Some(s)),
        _ => false,
    };
    let sr = check_poster_and_subreddit(state, ctx, text("sr"))?;
    if sr.link_type == LinkType::SelfOnly {
        return Err(json_errors(&[(
            "NO_LINKS",
            "that subreddit only allows text posts",
            "sr",
        )]));
    }
    if !sr.allow_images || !sr.allow_galleries {
        return Err(not_allowed("galleries"));
    }
    let title = check_title(text("title"))?;
    let items = body
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let max = state.config.max_gallery_items;
    if items.len() < 2 || items.len() > max {
        return Err(json_errors(&[(
            "BAD_NUMBER",
            &format!("a gallery takes 2 to {max} items; got {}", items.len()),
            "items",
        )]));
    }
    let mut gallery = Vec::with_capacity(items.len());
    for item in &items {
        let field = |name: &str| item.get(name).and_then(Value::as_str).unwrap_or_default();
        let media_id = field("media_id");
        let owned_image = state
            .lock()
            .assets
            .iter()
            .find(|a| a.asset_id == media_id && a.owner == user && a.location.is_some())
            .filter(|a| !is_video(&a.mimetype))
            .map(|a| a.mimetype.clone());
        let Some(mimetype) = owned_image else {
            return Err(json_errors(&[(
                "INVALID_MEDIA_ASSETS",
                "All Media assets must be owned by the submitter of this post",
                "items",
            )]));
        };
        if field("caption").chars().count() > MAX_CAPTION {
            return Err(json_errors(&[(
                "TOO_LONG",
                "this is too long (max: 180)",
                "caption",
            )]));
        }
        gallery.push(GalleryItem {
            media_id: media_id.to_owned(),
            mimetype,
            caption: field("caption").to_owned(),
            outbound_url: field("outbound_url").to_owned(),
        });
    }
    let template = check_flair(
        &sr,
        body.get("flair_id").and_then(Value::as_str),
        body.get("flair_text").and_then(Value::as_str),
    )?;
    check_ratelimit(state, &user)?;
    let mut inner = state.lock();
    let id = inner.next_post_id();
    let post = Post {
        id: id.clone(),
        author: user,
        subreddit: sr.name.clone(),
        kind: "gallery".to_owned(),
        title,
        text: String::new(),
        url: None,
        flair_id: template.as_ref().map(|t| t.0.clone()),
        flair_text: template.map(|t| t.1),
        nsfw: flag("nsfw"),
        spoiler: flag("spoiler"),
        created: chrono::Utc::now(),
        visible_at: Instant::now(),
        gallery,
        video: None,
    };
    let permalink = post.permalink();
    inner.posts.push(post);
    let base = format!("{}/reddit", origin(req));
    Ok(
        HttpResponse::Ok().json(json!({"json": {"errors": [], "data": {
            "url": format!("{base}{permalink}"),
            "id": format!("t3_{id}"),
        }}})),
    )
}

/// `POST /api/media/asset.json` (`submit`, form `filepath`, `mimetype`): a lease to upload one
/// image or video to the S3-style target. An image's key is `rte_images/{asset_id}`, a video's
/// the bare asset id (as in PRAW's recorded leases).
pub(crate) async fn media_asset(
    state: web::Data<RedditState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let ctx = match guard(&state, &req, RedditEndpoint::MediaAsset, "submit").await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let p = params(&req, &body);
    let filepath = param(&p, "filepath").unwrap_or_default().to_owned();
    let mimetype = param(&p, "mimetype").unwrap_or_default().to_owned();
    let known = IMAGE_TYPES.contains(&mimetype.as_str()) || is_video(&mimetype);
    if filepath.is_empty() || !known {
        let resp = reddit_error(
            StatusCode::BAD_REQUEST,
            "filepath and a mimetype (image/png, image/jpeg, image/gif, video/mp4, video/quicktime) are required",
        );
        return finish(&ctx, resp).await;
    }
    let asset_id = random_token(9).to_lowercase().replace(['-', '_'], "x");
    let key = if is_video(&mimetype) {
        asset_id.clone()
    } else {
        format!("rte_images/{asset_id}")
    };
    let policy = random_token(48);
    let signature = random_token(32);
    let ext = match mimetype.as_str() {
        "video/quicktime" => "mov".to_owned(),
        other => other.rsplit('/').next().unwrap_or("png").to_owned(),
    };
    state.lock().assets.push(Asset {
        asset_id: asset_id.clone(),
        owner: ctx.caller.username.clone(),
        key: key.clone(),
        mimetype: mimetype.clone(),
        policy: policy.clone(),
        signature: signature.clone(),
        bytes: None,
        location: None,
        reject: matches!(ctx.fault, Some(Fault::RejectMedia)),
    });
    let host = req.connection_info().host().to_owned();
    let fields = [
        ("acl", "private".to_owned()),
        ("key", key),
        (
            "X-Amz-Credential",
            format!(
                "SANDBOX/{}/us-east-1/s3/aws4_request",
                chrono::Utc::now().format("%Y%m%d")
            ),
        ),
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256".to_owned()),
        (
            "X-Amz-Date",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string(),
        ),
        ("success_action_status", "201".to_owned()),
        ("content-type", mimetype),
        ("x-amz-storage-class", "STANDARD".to_owned()),
        ("x-amz-meta-ext", ext),
        ("policy", policy),
        ("X-Amz-Signature", signature),
        ("x-amz-security-token", random_token(24)),
    ];
    let fields: Vec<Value> = fields
        .iter()
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect();
    let body = json!({
        "args": {
            // Protocol-relative, as Reddit sends it.
            "action": format!("//{host}/reddit/media-upload"),
            "fields": fields,
        },
        "asset": {
            "asset_id": asset_id,
            "processing_state": "incomplete",
            "payload": {"filepath": filepath},
            "websocket_url": format!("wss://ws-sandbox.invalid/rte_images/{asset_id}"),
        },
    });
    finish(&ctx, HttpResponse::Ok().json(body)).await
}

/// An S3 error document.
fn s3_error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((CONTENT_TYPE, "application/xml"))
        .body(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{}</RequestId></Error>",
            random_token(8)
        ))
}

/// `POST /media-upload`: the S3 form upload a lease allows. The lease's fields come first, the
/// `file` last; key, policy and signature must be the lease's.
pub(crate) async fn media_upload(
    state: web::Data<RedditState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let fault = state.take_fault(RedditEndpoint::MediaUpload);
    match &fault {
        Some(Fault::RateLimited { .. }) => {
            return s3_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "SlowDown",
                "Please reduce your request rate.",
            )
        }
        Some(Fault::ServerError { status }) => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return s3_error(
                status,
                "InternalError",
                "We encountered an internal error. Please try again.",
            );
        }
        Some(Fault::Timeout { secs }) => {
            tokio::time::sleep(faults::secs(*secs)).await;
            return s3_error(StatusCode::SERVICE_UNAVAILABLE, "RequestTimeout", "Your socket connection to the server was not read from or written to within the timeout period.");
        }
        _ => {}
    }
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let Some(boundary) = multipart::boundary(content_type) else {
        return s3_error(
            StatusCode::PRECONDITION_FAILED,
            "PreconditionFailed",
            "Bucket POST must be of the enclosure-type multipart/form-data",
        );
    };
    let parts = match multipart::parse(&body, &boundary) {
        Ok(parts) => parts,
        Err(e) => return s3_error(StatusCode::BAD_REQUEST, "MalformedPOSTRequest", &e),
    };
    let field = |name: &str| {
        parts
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name) && p.filename.is_none())
            .and_then(|p| p.text())
            .map(str::to_owned)
    };
    let Some(file_index) = parts.iter().position(|p| p.name == "file") else {
        return s3_error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "POST requires exactly one file upload per request.",
        );
    };
    if file_index != parts.len() - 1 {
        return s3_error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "Bucket POST must contain the file as its last field.",
        );
    }
    let file = &parts[file_index];
    let key = field("key").unwrap_or_default();
    let location = {
        let mut inner = state.lock();
        let Some(asset) = inner.assets.iter_mut().find(|a| a.key == key) else {
            return s3_error(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "Invalid according to Policy: Policy Condition failed: [\"eq\", \"$key\"]",
            );
        };
        if field("policy").as_deref() != Some(asset.policy.as_str())
            || field("x-amz-signature").as_deref() != Some(asset.signature.as_str())
        {
            return s3_error(
                StatusCode::FORBIDDEN,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            );
        }
        if field("content-type").as_deref() != Some(asset.mimetype.as_str()) {
            return s3_error(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "Invalid according to Policy: Policy Condition failed: [\"eq\", \"$Content-Type\"]",
            );
        }
        let size = file.data.len() as u64;
        let max = if is_video(&asset.mimetype) {
            state.config.video_max_bytes
        } else {
            state.config.image_max_bytes
        };
        if size == 0 || size > max {
            return s3_error(
                StatusCode::BAD_REQUEST,
                "EntityTooLarge",
                "Your proposed upload exceeds the maximum allowed size",
            );
        }
        if asset.reject {
            return s3_error(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                "The uploaded file is not media Reddit can process",
            );
        }
        let encoded = key.replace('/', "%2F");
        let location = format!("{}/reddit/media-upload/{encoded}", super::origin(&req));
        asset.bytes = Some(size);
        asset.location = Some(location.clone());
        location
    };
    if let Some(Fault::TimeoutAfterSuccess { secs }) = &fault {
        tokio::time::sleep(faults::secs(*secs)).await;
    }
    HttpResponse::Created()
        .insert_header((LOCATION, location.clone()))
        .insert_header((CONTENT_TYPE, "application/xml"))
        .body(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PostResponse><Location>{location}</Location><Bucket>reddit-uploaded-media</Bucket><Key>{key}</Key><ETag>\"{}\"</ETag></PostResponse>",
            random_token(16)
        ))
}

/// `GET /r/{sr}/api/link_flair_v2` (`flair`).
pub(crate) async fn link_flairs(
    state: web::Data<RedditState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let ctx = match guard(&state, &req, RedditEndpoint::Flairs, "flair").await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let Some(sr) = state.subreddit(&path) else {
        return finish(&ctx, reddit_error(StatusCode::NOT_FOUND, "Not Found")).await;
    };
    let flairs: Vec<Value> = sr
        .flairs
        .iter()
        .map(|(id, text)| {
            json!({
                "id": id, "text": text, "type": "text", "text_editable": false,
                "mod_only": false, "background_color": "", "text_color": "dark",
                "allowable_content": "all", "richtext": [],
            })
        })
        .collect();
    finish(&ctx, HttpResponse::Ok().json(flairs)).await
}

fn post_json(post: &Post, base: &str) -> Value {
    let is_self = post.kind == "self";
    let permalink = post.permalink();
    let url = match (&post.video, post.kind.as_str()) {
        // Reddit links a video post to `https://v.redd.it/{asset id}`.
        (Some((asset, _)), _) => format!("{base}/video/{asset}"),
        (None, "gallery") => format!("{base}/gallery/{}", post.id),
        _ => post
            .url
            .clone()
            .unwrap_or_else(|| format!("{base}{permalink}")),
    };
    let mut data = json!({
        "id": post.id,
        "name": format!("t3_{}", post.id),
        "title": post.title,
        "selftext": post.text,
        "url": url,
        "permalink": permalink,
        "subreddit": post.subreddit,
        "subreddit_name_prefixed": format!("r/{}", post.subreddit),
        "author": post.author,
        "created_utc": post.created.timestamp_millis() as f64 / 1000.0,
        "is_self": is_self,
        "is_video": post.video.is_some(),
        "over_18": post.nsfw,
        "spoiler": post.spoiler,
        "link_flair_template_id": post.flair_id,
        "link_flair_text": post.flair_text,
    });
    match post.kind.as_str() {
        "image" => data["post_hint"] = json!("image"),
        "link" => data["post_hint"] = json!("link"),
        "video" | "videogif" => {
            data["post_hint"] = json!("hosted:video");
            data["domain"] = json!("v.redd.it");
            data["media"] = json!({"reddit_video": {
                "is_gif": post.kind == "videogif",
                "transcoding_status": "completed",
            }});
        }
        "gallery" => {
            data["is_gallery"] = json!(true);
            let items: Vec<Value> = post
                .gallery
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let mut entry = json!({"media_id": item.media_id, "id": 100_000 + i});
                    if !item.caption.is_empty() {
                        entry["caption"] = json!(item.caption);
                    }
                    if !item.outbound_url.is_empty() {
                        entry["outbound_url"] = json!(item.outbound_url);
                    }
                    entry
                })
                .collect();
            data["gallery_data"] = json!({ "items": items });
            let metadata: serde_json::Map<String, Value> = post
                .gallery
                .iter()
                .map(|item| {
                    let entry = json!({"status": "valid", "e": "Image", "m": item.mimetype,
                        "id": item.media_id});
                    (item.media_id.clone(), entry)
                })
                .collect();
            data["media_metadata"] = Value::Object(metadata);
        }
        _ => {}
    }
    json!({"kind": "t3", "data": data})
}

/// `GET /user/{name}/submitted?limit=&sort=new` (`history`): newest first; image and video
/// posts show up once processed.
pub(crate) async fn submitted(
    state: web::Data<RedditState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let ctx = match guard(&state, &req, RedditEndpoint::Submitted, "history").await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let q = params(&req, &[]);
    let name = path.into_inner();
    if !state.lock().users.contains_key(&name) {
        return finish(&ctx, reddit_error(StatusCode::NOT_FOUND, "Not Found")).await;
    }
    let limit = param(&q, "limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(25)
        .clamp(1, 100);
    let base = format!("{}/reddit", origin(&req));
    let now = Instant::now();
    let children: Vec<Value> = state
        .lock()
        .posts
        .iter()
        .rev()
        .filter(|p| p.author == name && p.visible_at <= now)
        .take(limit)
        .map(|p| post_json(p, &base))
        .collect();
    let body = json!({"kind": "Listing", "data": {
        "after": null, "before": null, "dist": children.len(), "children": children,
    }});
    finish(&ctx, HttpResponse::Ok().json(body)).await
}
