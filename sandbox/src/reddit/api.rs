//! Reddit's account, submit, media-lease, flair and listing endpoints (platform-facts §9.2).

use std::time::Instant;

use actix_web::http::header::{CONTENT_TYPE, LOCATION};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::state::{Asset, Post};
use super::{
    finish, guard, json_errors, origin, param, params, reddit_error, Ctx, LinkType, RedditEndpoint,
    RedditState, MAX_TEXT, MAX_TITLE,
};
use crate::faults::{self, Fault};
use crate::multipart;
use crate::oauth::random_token;

const IMAGE_TYPES: &[&str] = &["image/png", "image/jpeg", "image/gif"];

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

/// Whether `url` points at an uploaded asset of `owner`; its index.
fn uploaded_asset(state: &RedditState, owner: &str, url: &str) -> Option<usize> {
    let decoded = url.replace("%2F", "/").replace("%2f", "/");
    state.lock().assets.iter().position(|a| {
        a.owner == owner && a.location.is_some() && decoded.ends_with(&format!("/{}", a.key))
    })
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

fn validate_and_create(
    state: &RedditState,
    req: &HttpRequest,
    ctx: &Ctx,
    p: &[(String, String)],
) -> Result<HttpResponse, HttpResponse> {
    let user = ctx.caller.username.clone();
    if let Some(Fault::ContentRejected { detail }) = &ctx.fault {
        return Err(json_errors(&[(
            "SUBMIT_VALIDATION_BODY_BLACKLISTED_STRING",
            detail,
            "text",
        )]));
    }
    if state.config.users_in_timeout.contains(&user) {
        return Err(json_errors(&[(
            "IN_TIMEOUT",
            "you can't do that while you are in timeout",
            "",
        )]));
    }
    if state.config.users_needing_captcha.contains(&user) {
        return Err(json_errors(&[(
            "BAD_CAPTCHA",
            "care to try these again?",
            "captcha",
        )]));
    }
    let sr_name = param(p, "sr").unwrap_or_default().trim();
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
    if sr.restricted && !sr.approved.contains(&user) {
        return Err(json_errors(&[(
            "SUBREDDIT_NOTALLOWED",
            "you aren't allowed to post there.",
            "sr",
        )]));
    }
    let kind = param(p, "kind").unwrap_or_default();
    if !matches!(kind, "self" | "link" | "image") {
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
        ("link" | "image", LinkType::SelfOnly) => {
            return Err(json_errors(&[(
                "NO_LINKS",
                "that subreddit only allows text posts",
                "sr",
            )]))
        }
        _ => {}
    }
    let title = param(p, "title").unwrap_or_default().trim().to_owned();
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
        match uploaded_asset(state, &user, &url) {
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
    let flair_id = param(p, "flair_id").filter(|s| !s.is_empty());
    let flair_text = param(p, "flair_text").filter(|s| !s.is_empty());
    let template = match (flair_id, flair_text) {
        (Some(id), _) => match sr.flairs.iter().find(|(fid, _)| fid == id) {
            Some(t) => Some(t.clone()),
            None => {
                return Err(json_errors(&[(
                    "INVALID_FLAIR_TEMPLATE_ID",
                    "that flair template doesn't exist",
                    "flair",
                )]))
            }
        },
        (None, Some(text)) => match sr.flairs.iter().find(|(_, t)| t == text) {
            Some(t) => Some(t.clone()),
            None => {
                return Err(json_errors(&[(
                    "INVALID_FLAIR_TEMPLATE_ID",
                    "that flair template doesn't exist",
                    "flair",
                )]))
            }
        },
        (None, None) => None,
    };
    if sr.flair_required && template.is_none() {
        return Err(json_errors(&[(
            "SUBMIT_VALIDATION_FLAIR_REQUIRED",
            "Your post must contain post flair.",
            "flair",
        )]));
    }
    if let Err(wait) = state.count_submit(&user) {
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
        return Err(HttpResponse::Ok().json(json!({"json": {
            "ratelimit": secs,
            "errors": [["RATELIMIT", message, "ratelimit"]],
        }})));
    }
    let image_delay = state.config.image_processing_delay;
    let mut inner = state.lock();
    let id = inner.next_post_id();
    let url = match kind {
        "self" => None,
        _ => Some(url),
    };
    let post = Post {
        id: id.clone(),
        author: user.clone(),
        subreddit: sr.name.clone(),
        kind: kind.to_owned(),
        title,
        text: if kind == "self" { text } else { String::new() },
        url,
        flair_id: template.as_ref().map(|t| t.0.clone()),
        flair_text: template.map(|t| t.1),
        nsfw: truthy(param(p, "nsfw")),
        spoiler: truthy(param(p, "spoiler")),
        created: chrono::Utc::now(),
        visible_at: if kind == "image" {
            Instant::now() + image_delay
        } else {
            Instant::now()
        },
    };
    let permalink = post.permalink();
    inner.posts.push(post);
    let base = format!("{}/reddit", origin(req));
    if let Some(index) = asset {
        let asset_id = inner.assets[index].asset_id.clone();
        // Image posts answer with a websocket to wait on, not with the post.
        return Ok(HttpResponse::Ok().json(json!({"json": {"errors": [], "data": {
            "user_submitted_page": format!("{base}/user/{user}/submitted/"),
            "websocket_url": format!("wss://ws-sandbox.invalid/rte_images/{asset_id}?m={}", random_token(12)),
        }}})));
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

/// `POST /api/media/asset.json` (`submit`, form `filepath`, `mimetype`): a lease to upload one
/// image to the S3-style target.
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
    if filepath.is_empty() || !IMAGE_TYPES.contains(&mimetype.as_str()) {
        let resp = reddit_error(
            StatusCode::BAD_REQUEST,
            "filepath and an image mimetype (image/png, image/jpeg, image/gif) are required",
        );
        return finish(&ctx, resp).await;
    }
    let asset_id = random_token(9).to_lowercase().replace(['-', '_'], "x");
    let key = format!("rte_images/{asset_id}");
    let policy = random_token(48);
    let signature = random_token(32);
    let ext = mimetype.rsplit('/').next().unwrap_or("png").to_owned();
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
        if size == 0 || size > state.config.image_max_bytes {
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
                "The uploaded file is not an image Reddit can process",
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
    let url = post
        .url
        .clone()
        .unwrap_or_else(|| format!("{base}{permalink}"));
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
        "over_18": post.nsfw,
        "spoiler": post.spoiler,
        "link_flair_template_id": post.flair_id,
        "link_flair_text": post.flair_text,
    });
    if post.kind == "image" {
        data["post_hint"] = json!("image");
    } else if post.kind == "link" {
        data["post_hint"] = json!("link");
    }
    json!({"kind": "t3", "data": data})
}

/// `GET /user/{name}/submitted?limit=&sort=new` (`history`): newest first; image posts show
/// up once processed.
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
