//! LinkedIn's organisation, media and posts endpoints (platform-facts §8.1–§8.4).

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use super::state::{Caller, Inner, Media, MediaType, Part, Post};
use super::{
    access_denied, bad_request, finish, guard, little, param, params, rest_error,
    too_many_requests, validation_error, Ctx, LinkedInEndpoint, LinkedInState, MAX_COMMENTARY,
};
use crate::faults::{self, Fault};
use crate::oauth::random_token;
use crate::twin::Twin as _;

/// Upload URLs are valid for a day.
const UPLOAD_URL_LIFETIME_MS: i64 = 86_400_000;
/// Images in a multi-image post.
const MULTI_IMAGE: std::ops::RangeInclusive<usize> = 2..=20;

/// `{version}01`, the form LinkedIn prints versions in inside permission messages.
fn printed_version(ctx: &Ctx) -> String {
    format!("{}01", ctx.version.split('.').next().unwrap_or_default())
}

/// `GET /rest/organizationAcls?q=roleAssignee[&role=][&state=]`.
pub(crate) async fn organization_acls(
    state: web::Data<LinkedInState>,
    req: HttpRequest,
) -> HttpResponse {
    let ctx = match guard(&state, &req, LinkedInEndpoint::OrganizationAcls, true).await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let allowed = [
        "rw_organization_admin",
        "r_organization_admin",
        "w_organization_social",
        "r_organization_social",
    ];
    if !allowed.iter().any(|s| ctx.caller.has(s)) {
        return access_denied(&format!(
            "organizationAcls.FINDER-roleAssignee.{}",
            printed_version(&ctx)
        ));
    }
    let q = params(&req, &[]);
    if param(&q, "q") != Some("roleAssignee") {
        return bad_request("This resource supports the finders: roleAssignee, organization");
    }
    let role = param(&q, "role");
    let wanted_state = param(&q, "state");
    let start: usize = param(&q, "start").and_then(|s| s.parse().ok()).unwrap_or(0);
    let count: usize = param(&q, "count")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
        .min(100);
    let member = ctx.caller.urn();
    let roles = state.lock().roles_of(&state.config, &ctx.caller.member_id);
    let all: Vec<Value> = roles
        .into_iter()
        .filter(|(_, r)| role.is_none_or(|want| want == r))
        .filter(|_| wanted_state.is_none_or(|s| s == "APPROVED"))
        .map(|(org, r)| {
            json!({
                "roleAssignee": member,
                "state": "APPROVED",
                "role": r,
                "organization": format!("urn:li:organization:{org}"),
            })
        })
        .collect();
    let total = all.len();
    let elements: Vec<Value> = all.into_iter().skip(start).take(count).collect();
    let body = json!({
        "paging": {"start": start, "count": count, "links": [], "total": total},
        "elements": elements,
    });
    finish(&ctx, HttpResponse::Ok().json(body)).await
}

/// `GET /rest/organizations/{id}`.
pub(crate) async fn organization(
    state: web::Data<LinkedInState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let ctx = match guard(&state, &req, LinkedInEndpoint::Organizations, true).await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let id = path.into_inner();
    let org = id
        .parse::<u64>()
        .ok()
        .and_then(|id| state.config.organizations.iter().find(|o| o.id == id));
    let Some(org) = org else {
        return rest_error(
            StatusCode::NOT_FOUND,
            None,
            Some("RESOURCE_NOT_FOUND"),
            &format!("Organization {id} does not exist"),
        );
    };
    let body = json!({
        "id": org.id,
        "localizedName": org.name,
        "vanityName": org.vanity_name,
        "name": {
            "localized": {"en_US": org.name},
            "preferredLocale": {"country": "US", "language": "en"},
        },
    });
    finish(&ctx, HttpResponse::Ok().json(body)).await
}

/// The absolute upload URL for `key` on the host the client used.
fn upload_url(req: &HttpRequest, key: &str) -> String {
    let info = req.connection_info();
    format!(
        "{}://{}/linkedin/dms-uploads/{key}",
        info.scheme(),
        info.host()
    )
}

/// The JSON body, or LinkedIn's answer to one it cannot read.
fn json_body(body: &[u8]) -> Result<Value, HttpResponse> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| bad_request("Request body could not be converted to data map"))
}

/// `initializeUploadRequest.owner`, checked against what the caller may act as.
fn upload_owner(state: &LinkedInState, ctx: &Ctx, request: &Value) -> Result<String, HttpResponse> {
    let Some(owner) = request["owner"].as_str() else {
        return Err(validation_error(
            "/initializeUploadRequest/owner",
            "field is required but not found and has no default value",
        ));
    };
    if !state.lock().may_act_as(&state.config, &ctx.caller, owner) {
        return Err(access_denied(&format!(
            "partnerApiAssets.ACTION-initializeUpload.{}",
            printed_version(ctx)
        )));
    }
    Ok(owner.to_owned())
}

/// How a media fault changes processing: extra time, or failure.
fn processing_fault(fault: &Option<Fault>) -> (Duration, bool) {
    match fault {
        Some(Fault::SlowProcessing { secs }) => (faults::secs(*secs), false),
        Some(Fault::RejectMedia) => (Duration::ZERO, true),
        _ => (Duration::ZERO, false),
    }
}

/// `POST /rest/images?action=initializeUpload`.
pub(crate) async fn images_action(
    state: web::Data<LinkedInState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    initialize_whole_file(state, req, body, MediaType::Image).await
}

/// `POST /rest/documents?action=initializeUpload`: the same shape as images, answering
/// `value.document` (Documents API).
pub(crate) async fn documents_action(
    state: web::Data<LinkedInState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    initialize_whole_file(state, req, body, MediaType::Document).await
}

/// An upload URL for a file taken in one `PUT` (an image or a document).
async fn initialize_whole_file(
    state: web::Data<LinkedInState>,
    req: HttpRequest,
    body: web::Bytes,
    kind: MediaType,
) -> HttpResponse {
    let (endpoint, resource, field, urn_prefix) = match kind {
        MediaType::Document => (
            LinkedInEndpoint::InitializeDocument,
            "documents",
            "document",
            "urn:li:document:D4D10AQ",
        ),
        _ => (
            LinkedInEndpoint::InitializeImage,
            "images",
            "image",
            "urn:li:image:D4E10AQ",
        ),
    };
    let ctx = match guard(&state, &req, endpoint, true).await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    if param(&params(&req, &[]), "action") != Some("initializeUpload") {
        return bad_request(&format!(
            "Unsupported action; {resource} support action=initializeUpload"
        ));
    }
    let body = match json_body(&body) {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let owner = match upload_owner(&state, &ctx, &body["initializeUploadRequest"]) {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let (processing, failed) = processing_fault(&ctx.fault);
    let urn = format!("{urn_prefix}{}", random_token(12));
    let key = random_token(24);
    {
        let mut inner = state.lock();
        inner.media.insert(
            urn.clone(),
            Media {
                urn: urn.clone(),
                owner,
                kind,
                bytes: 0,
                parts: vec![Part {
                    first: 0,
                    last: 0,
                    key: key.clone(),
                    etag: None,
                }],
                upload_token: String::new(),
                finalized: true,
                ready_at: None,
                processing,
                failed,
            },
        );
        inner.media_order.push(urn.clone());
        inner.uploads.insert(key.clone(), (urn.clone(), 0));
    }
    let body = json!({"value": {
        "uploadUrlExpiresAt": chrono::Utc::now().timestamp_millis() + UPLOAD_URL_LIFETIME_MS,
        "uploadUrl": upload_url(&req, &key),
        field: urn,
    }});
    finish(&ctx, HttpResponse::Ok().json(body)).await
}

/// `POST /rest/videos?action=initializeUpload|finalizeUpload`.
pub(crate) async fn videos_action(
    state: web::Data<LinkedInState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let action = param(&params(&req, &[]), "action").map(str::to_owned);
    let endpoint = match action.as_deref() {
        Some("initializeUpload") => LinkedInEndpoint::InitializeVideo,
        Some("finalizeUpload") => LinkedInEndpoint::FinalizeVideo,
        _ => {
            return bad_request(
                "Unsupported action; videos support action=initializeUpload and finalizeUpload",
            )
        }
    };
    let ctx = match guard(&state, &req, endpoint, true).await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let body = match json_body(&body) {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    if endpoint == LinkedInEndpoint::FinalizeVideo {
        return finalize_video(&state, ctx, &body["finalizeUploadRequest"]).await;
    }
    let request = &body["initializeUploadRequest"];
    let owner = match upload_owner(&state, &ctx, request) {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let Some(size) = request["fileSizeBytes"].as_u64() else {
        return validation_error(
            "/initializeUploadRequest/fileSizeBytes",
            "field is required but not found and has no default value",
        );
    };
    let config = &state.config;
    if !(config.video_min_bytes..=config.video_max_bytes).contains(&size) {
        return bad_request(&format!(
            "fileSizeBytes {size} is outside the allowed range {}..{} bytes",
            config.video_min_bytes, config.video_max_bytes
        ));
    }
    let (processing, failed) = processing_fault(&ctx.fault);
    let urn = format!("urn:li:video:D5610AQ{}", random_token(12));
    let part_size = config.video_part_size.max(1);
    let parts: Vec<Part> = (0..size.div_ceil(part_size))
        .map(|i| Part {
            first: i * part_size,
            last: ((i + 1) * part_size).min(size) - 1,
            key: random_token(24),
            etag: None,
        })
        .collect();
    // LinkedIn sends an empty upload token for single-part uploads.
    let upload_token = if parts.len() > 1 {
        random_token(32)
    } else {
        String::new()
    };
    let instructions: Vec<Value> = parts
        .iter()
        .map(|p| {
            json!({
                "uploadUrl": upload_url(&req, &p.key),
                "firstByte": p.first,
                "lastByte": p.last,
            })
        })
        .collect();
    {
        let mut inner = state.lock();
        for (i, p) in parts.iter().enumerate() {
            inner.uploads.insert(p.key.clone(), (urn.clone(), i));
        }
        inner.media.insert(
            urn.clone(),
            Media {
                urn: urn.clone(),
                owner,
                kind: MediaType::Video,
                bytes: size,
                parts,
                upload_token: upload_token.clone(),
                finalized: false,
                ready_at: None,
                processing,
                failed,
            },
        );
        inner.media_order.push(urn.clone());
    }
    let body = json!({"value": {
        "uploadUrlsExpireAt": chrono::Utc::now().timestamp_millis() + UPLOAD_URL_LIFETIME_MS,
        "video": urn,
        "uploadInstructions": instructions,
        "uploadToken": upload_token,
    }});
    finish(&ctx, HttpResponse::Ok().json(body)).await
}

async fn finalize_video(state: &LinkedInState, ctx: Ctx, request: &Value) -> HttpResponse {
    let urn = request["video"].as_str().unwrap_or_default();
    let token = request["uploadToken"].as_str().unwrap_or_default();
    let ids: Vec<&str> = request["uploadedPartIds"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let (slow, reject) = processing_fault(&ctx.fault);
    let result = {
        let mut inner = state.lock();
        // Decided on the guard already held: a second lock here blocked the worker for good.
        let may_act = inner
            .media
            .get(urn)
            .is_some_and(|m| inner.may_act_as(&state.config, &ctx.caller, &m.owner));
        match inner
            .media
            .get_mut(urn)
            .filter(|m| m.kind == MediaType::Video)
        {
            None => Err(validation_error(
                "/finalizeUploadRequest/video",
                "the video does not exist",
            )),
            Some(_) if !may_act => Err(access_denied(&format!(
                "partnerApiVideos.ACTION-finalizeUpload.{}",
                printed_version(&ctx)
            ))),
            Some(m) if m.finalized => Err(bad_request("The video upload is already finalized")),
            Some(m) if m.upload_token != token => {
                Err(bad_request("The uploadToken does not match the video"))
            }
            Some(m) if m.parts.iter().any(|p| p.etag.is_none()) => Err(bad_request(&format!(
                "Not every part was uploaded: {} of {} received",
                m.parts.iter().filter(|p| p.etag.is_some()).count(),
                m.parts.len()
            ))),
            Some(m) => {
                let etags: Vec<&str> = m.parts.iter().filter_map(|p| p.etag.as_deref()).collect();
                if etags != ids {
                    Err(bad_request(
                        "uploadedPartIds must list every part's ETag in upload-instruction order",
                    ))
                } else {
                    m.finalized = true;
                    m.failed |= reject;
                    m.ready_at = Some(
                        Instant::now() + state.config.video_processing_delay + m.processing + slow,
                    );
                    Ok(())
                }
            }
        }
    };
    match result {
        Ok(()) => finish(&ctx, HttpResponse::Ok().finish()).await,
        Err(resp) => resp,
    }
}

/// `PUT /dms-uploads/{key}`: an image, a document, or one byte range of a video. Upload URLs
/// are signed, so no token is needed. A document that is not a PDF or an Office file (by its
/// first bytes) uploads, then fails processing, as LinkedIn cannot render it.
pub(crate) async fn upload(
    state: web::Data<LinkedInState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let fault = state.take_fault(LinkedInEndpoint::Upload);
    if let Some(fault) = &fault {
        if let Some(resp) = super::blocking_fault_response(fault).await {
            return resp;
        }
    }
    let key = path.into_inner();
    let etag = format!("/ambry-video/signedId/{}", random_token(16));
    let result = {
        let mut inner = state.lock();
        let Some((urn, index)) = inner.uploads.get(&key).cloned() else {
            return rest_error(
                StatusCode::NOT_FOUND,
                None,
                None,
                "The upload URL is unknown or has expired",
            );
        };
        let max_whole = match inner.media.get(&urn).map(|m| m.kind) {
            Some(MediaType::Document) => state.config.document_max_bytes,
            _ => state.config.image_max_bytes,
        };
        let Some(media) = inner.media.get_mut(&urn) else {
            return rest_error(StatusCode::NOT_FOUND, None, None, "Unknown upload");
        };
        let len = body.len() as u64;
        if media.kind == MediaType::Video {
            let part = &mut media.parts[index];
            let expected = part.last - part.first + 1;
            if len != expected {
                Err(bad_request(&format!(
                    "This part must be exactly {expected} bytes (bytes {}-{}); got {len}",
                    part.first, part.last
                )))
            } else {
                part.etag = Some(etag.clone());
                Ok(())
            }
        } else if len == 0 || len > max_whole {
            let what = if media.kind == MediaType::Document {
                "document"
            } else {
                "image"
            };
            Err(bad_request(&format!(
                "The {what} must be between 1 and {max_whole} bytes; got {len}"
            )))
        } else {
            if media.kind == MediaType::Document && !is_document(&body) {
                media.failed = true;
            }
            media.bytes = len;
            media.parts[0].last = len - 1;
            media.parts[0].etag = Some(etag.clone());
            media.ready_at = Some(Instant::now() + media.processing);
            Ok(())
        }
    };
    if let Err(resp) = result {
        return resp;
    }
    if let Some(Fault::TimeoutAfterSuccess { secs }) = &fault {
        tokio::time::sleep(faults::secs(*secs)).await;
    }
    HttpResponse::Created()
        .insert_header(("ETag", etag))
        .finish()
}

/// Whether the bytes start like a PDF, an Office Open XML (zip) or a legacy Office (OLE2) file.
fn is_document(bytes: &[u8]) -> bool {
    const SIGNATURES: [&[u8]; 3] = [b"%PDF-", b"PK\x03\x04", b"\xD0\xCF\x11\xE0"];
    SIGNATURES.iter().any(|s| bytes.starts_with(s))
}

fn media_status(state: &LinkedInState, ctx: &Ctx, urn: &str, kind: MediaType) -> Option<Value> {
    let inner = state.lock();
    let m = inner
        .media
        .get(urn)
        .filter(|m| m.kind == kind && inner.may_read(&state.config, &ctx.caller, &m.owner))?;
    let video = kind == MediaType::Video;
    let status = m.status(Instant::now());
    let mut body = json!({ "id": m.urn, "owner": m.owner, "status": status });
    if status == "PROCESSING_FAILED" {
        body["processingFailureReason"] = json!("The media could not be processed");
    }
    if video && status == "AVAILABLE" {
        body["duration"] = json!(15_000);
        body["aspectRatioWidth"] = json!(16.0);
        body["aspectRatioHeight"] = json!(9.0);
    }
    Some(body)
}

async fn status_of(
    state: web::Data<LinkedInState>,
    req: HttpRequest,
    urn: String,
    kind: MediaType,
) -> HttpResponse {
    let ctx = match guard(&state, &req, LinkedInEndpoint::MediaStatus, true).await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    match media_status(&state, &ctx, &urn, kind) {
        Some(body) => finish(&ctx, HttpResponse::Ok().json(body)).await,
        None => rest_error(
            StatusCode::NOT_FOUND,
            None,
            Some("RESOURCE_NOT_FOUND"),
            &format!("{urn} does not exist"),
        ),
    }
}

/// `GET /rest/images/{urn}`.
pub(crate) async fn image_status(
    state: web::Data<LinkedInState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    status_of(state, req, path.into_inner(), MediaType::Image).await
}

/// `GET /rest/documents/{urn}`.
pub(crate) async fn document_status(
    state: web::Data<LinkedInState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    status_of(state, req, path.into_inner(), MediaType::Document).await
}

/// `GET /rest/videos/{urn}`.
pub(crate) async fn video_status(
    state: web::Data<LinkedInState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    status_of(state, req, path.into_inner(), MediaType::Video).await
}

const POST_FIELDS: &[&str] = &[
    "author",
    "commentary",
    "visibility",
    "distribution",
    "content",
    "lifecycleState",
    "isReshareDisabledByAuthor",
    "contentLandingPage",
    "contentCallToActionLabel",
    "container",
    "reshareContext",
    "adContext",
    "lifecycleStateInfo",
];
const REQUIRED_POST_FIELDS: &[&str] = &[
    "author",
    "commentary",
    "visibility",
    "distribution",
    "lifecycleState",
];

/// Rest.li schema validation: every unknown field and every missing required one, in one
/// 422 message.
fn check_schema(body: &Map<String, Value>) -> Result<(), HttpResponse> {
    let mut errors = String::new();
    for key in body.keys().filter(|k| !POST_FIELDS.contains(&k.as_str())) {
        errors.push_str(&format!(
            "ERROR :: /{key} :: unrecognized field found but not allowed\n"
        ));
    }
    for key in REQUIRED_POST_FIELDS
        .iter()
        .filter(|k| !body.contains_key(**k))
    {
        errors.push_str(&format!(
            "ERROR :: /{key} :: field is required but not found and has no default value\n"
        ));
    }
    if errors.is_empty() {
        return Ok(());
    }
    Err(rest_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        None,
        None,
        &errors,
    ))
}

/// What a post's `content` holds.
struct Content {
    kind: &'static str,
    media: Vec<String>,
    title: Option<String>,
    article_url: Option<String>,
}

/// A media URN usable in a post by `author`.
fn usable_media(
    inner: &Inner,
    author: &str,
    urn: &str,
    path: &str,
    prefix: &str,
) -> Result<(), HttpResponse> {
    if !urn.starts_with(prefix) {
        return Err(validation_error(
            path,
            &format!("{urn} is not a valid {prefix} URN"),
        ));
    }
    let Some(m) = inner.media.get(urn) else {
        return Err(validation_error(path, &format!("{urn} does not exist")));
    };
    if m.owner != author {
        return Err(validation_error(
            path,
            &format!(
                "{urn} is owned by {}, not by the post author {author}",
                m.owner
            ),
        ));
    }
    match m.status(Instant::now()) {
        "AVAILABLE" => Ok(()),
        status => Err(validation_error(
            path,
            &format!("{urn} has status {status}; media must be AVAILABLE before it is posted"),
        )),
    }
}

fn parse_content(
    inner: &Inner,
    author: &str,
    content: Option<&Value>,
) -> Result<Content, HttpResponse> {
    let none = Content {
        kind: "none",
        media: vec![],
        title: None,
        article_url: None,
    };
    let Some(content) = content else {
        return Ok(none);
    };
    let Some(obj) = content.as_object() else {
        return Err(validation_error("/content", "must be an object"));
    };
    if obj.len() != 1 {
        return Err(validation_error(
            "/content",
            "exactly one of media, multiImage, article, poll, reference must be set",
        ));
    }
    let title = |v: &Value| v["title"].as_str().map(str::to_owned);
    if let Some(media) = obj.get("media") {
        let id = media["id"].as_str().unwrap_or_default();
        let (kind, prefix) = if id.starts_with("urn:li:video:") {
            ("video", MediaType::Video.urn_prefix())
        } else if id.starts_with("urn:li:document:") {
            ("document", MediaType::Document.urn_prefix())
        } else {
            ("image", MediaType::Image.urn_prefix())
        };
        usable_media(inner, author, id, "/content/media/id", prefix)?;
        let media_title = title(media).filter(|t| !t.trim().is_empty());
        // A document is shown under its title: LinkedIn's examples always give one.
        if kind == "document" && media_title.is_none() {
            return Err(validation_error(
                "/content/media/title",
                "field is required but not found and has no default value",
            ));
        }
        return Ok(Content {
            kind,
            media: vec![id.to_owned()],
            title: media_title,
            article_url: None,
        });
    }
    if let Some(multi) = obj.get("multiImage") {
        let images = multi["images"].as_array().cloned().unwrap_or_default();
        if !MULTI_IMAGE.contains(&images.len()) {
            return Err(validation_error(
                "/content/multiImage/images",
                &format!(
                    "a multi-image post needs 2 to 20 images; got {}",
                    images.len()
                ),
            ));
        }
        let mut ids = Vec::new();
        for (i, image) in images.iter().enumerate() {
            let id = image["id"].as_str().unwrap_or_default();
            let path = format!("/content/multiImage/images/{i}/id");
            usable_media(inner, author, id, &path, "urn:li:image:")?;
            ids.push(id.to_owned());
        }
        return Ok(Content {
            kind: "multi_image",
            media: ids,
            title: None,
            article_url: None,
        });
    }
    if let Some(article) = obj.get("article") {
        let source = article["source"].as_str().unwrap_or_default();
        let valid = url::Url::parse(source)
            .ok()
            .is_some_and(|u| matches!(u.scheme(), "http" | "https"));
        if !valid {
            return Err(validation_error(
                "/content/article/source",
                "must be an absolute http(s) URL",
            ));
        }
        let Some(t) = title(article).filter(|t| !t.trim().is_empty()) else {
            return Err(validation_error(
                "/content/article/title",
                "field is required but not found and has no default value",
            ));
        };
        if let Some(thumb) = article["thumbnail"].as_str() {
            usable_media(
                inner,
                author,
                thumb,
                "/content/article/thumbnail",
                "urn:li:image:",
            )?;
        }
        return Ok(Content {
            kind: "article",
            media: vec![],
            title: Some(t),
            article_url: Some(source.to_owned()),
        });
    }
    if let Some(poll) = obj.get("poll") {
        return parse_poll(poll);
    }
    Err(validation_error(
        "/content",
        "this sandbox supports media, multiImage, article and poll content",
    ))
}

/// Poll API: a question of up to 140 characters, 2-4 options of up to 30, and a duration of
/// ONE_DAY, THREE_DAYS, SEVEN_DAYS or FOURTEEN_DAYS (the character limits are third-party
/// figures).
fn parse_poll(poll: &Value) -> Result<Content, HttpResponse> {
    let question = poll["question"].as_str().unwrap_or_default();
    if !(1..=140).contains(&question.chars().count()) {
        return Err(validation_error(
            "/content/poll/question",
            "length must be between 1 and 140 characters",
        ));
    }
    let options = poll["options"].as_array().cloned().unwrap_or_default();
    if !(2..=4).contains(&options.len()) {
        return Err(validation_error(
            "/content/poll/options",
            &format!("a poll needs 2 to 4 options; got {}", options.len()),
        ));
    }
    for (i, option) in options.iter().enumerate() {
        let text = option["text"].as_str().unwrap_or_default();
        if !(1..=30).contains(&text.chars().count()) {
            return Err(validation_error(
                &format!("/content/poll/options/{i}/text"),
                "length must be between 1 and 30 characters",
            ));
        }
    }
    let duration = poll["settings"]["duration"].as_str().unwrap_or_default();
    if !matches!(
        duration,
        "ONE_DAY" | "THREE_DAYS" | "SEVEN_DAYS" | "FOURTEEN_DAYS"
    ) {
        return Err(validation_error(
            "/content/poll/settings/duration",
            "must be one of ONE_DAY, THREE_DAYS, SEVEN_DAYS, FOURTEEN_DAYS",
        ));
    }
    Ok(Content {
        kind: "poll",
        media: vec![],
        title: Some(question.to_owned()),
        article_url: None,
    })
}

fn post_json(p: &Post) -> Value {
    let ms = p.created_at.timestamp_millis();
    let mut body = json!({
        "id": p.urn,
        "author": p.author,
        "commentary": p.commentary,
        "visibility": p.visibility,
        "lifecycleState": p.lifecycle_state,
        "distribution": p.distribution,
        "isReshareDisabledByAuthor": false,
        "createdAt": ms,
        "lastModifiedAt": ms,
        "lifecycleStateInfo": {"isEditedByAuthor": false},
    });
    if p.lifecycle_state == "PUBLISHED" {
        body["publishedAt"] = json!(ms);
    }
    if !p.content.is_null() {
        body["content"] = p.content.clone();
    }
    body
}

/// `POST /rest/posts`: 201 with the URN in `x-restli-id` and an empty body.
pub(crate) async fn create_post(
    state: web::Data<LinkedInState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let ctx = match guard(&state, &req, LinkedInEndpoint::CreatePost, true).await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let body = match json_body(&body) {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let Some(obj) = body.as_object() else {
        return bad_request("Request body could not be converted to data map");
    };
    if let Err(resp) = check_schema(obj) {
        return resp;
    }
    let author = body["author"].as_str().unwrap_or_default().to_owned();
    let urn = match record_post(&state, &ctx, &body, author) {
        Ok(urn) => urn,
        Err(resp) => return resp,
    };
    let resp = HttpResponse::Created()
        .insert_header(("x-restli-id", urn.clone()))
        .insert_header(("x-linkedin-id", urn))
        .finish();
    finish(&ctx, resp).await
}

/// The checks of `POST /rest/posts` that read the twin's state, and the post they allow, under
/// one guard (so what was checked is what is posted) in a function that cannot await.
fn record_post(
    state: &LinkedInState,
    ctx: &Ctx,
    body: &Value,
    author: String,
) -> Result<String, HttpResponse> {
    let mut inner = state.lock();
    if !inner.may_act_as(&state.config, &ctx.caller, &author) {
        return Err(access_denied(&format!(
            "partnerApiPostsExternal.CREATE.{}",
            printed_version(ctx)
        )));
    }
    let visibility = body["visibility"].as_str().unwrap_or_default().to_owned();
    let organization = author.starts_with("urn:li:organization:");
    match visibility.as_str() {
        "PUBLIC" | "LOGGED_IN" => {}
        "CONNECTIONS" if !organization => {}
        "CONNECTIONS" => {
            return Err(validation_error(
                "/visibility",
                "CONNECTIONS is only available to member authors",
            ))
        }
        other => {
            return Err(validation_error(
                "/visibility",
                &format!("{other} is not one of PUBLIC, CONNECTIONS, LOGGED_IN"),
            ))
        }
    }
    let feed = body["distribution"]["feedDistribution"]
        .as_str()
        .unwrap_or_default();
    if !matches!(feed, "MAIN_FEED" | "NONE") {
        return Err(validation_error(
            "/distribution/feedDistribution",
            "field is required and must be MAIN_FEED or NONE",
        ));
    }
    let lifecycle = body["lifecycleState"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if !matches!(lifecycle.as_str(), "PUBLISHED" | "DRAFT") {
        return Err(validation_error(
            "/lifecycleState",
            "must be PUBLISHED or DRAFT",
        ));
    }
    let Some(commentary) = body["commentary"].as_str().map(str::to_owned) else {
        return Err(validation_error("/commentary", "must be a string"));
    };
    let content = parse_content(&inner, &author, body.get("content"))?;
    let (text, truncated) = little::render(&commentary);
    let length = text.chars().count();
    if length > MAX_COMMENTARY {
        return Err(validation_error(
            "/commentary",
            &format!("length {length} exceeds the maximum allowed length of {MAX_COMMENTARY}"),
        ));
    }
    if text.trim().is_empty() && content.kind == "none" {
        return Err(validation_error(
            "/commentary",
            "a post without content needs commentary",
        ));
    }
    let content_json = body.get("content").cloned().unwrap_or(Value::Null);
    {
        let duplicate = inner
            .posts
            .iter()
            .find(|p| p.author == author && p.commentary == commentary && p.content == content_json)
            .map(|p| p.urn.clone());
        if let Some(existing) = duplicate {
            return Err(HttpResponse::UnprocessableEntity().json(json!({
                "errorDetailType": "com.linkedin.common.error.BadRequest",
                "message": format!("com.linkedin.content.common.exception.BadRequestResponseException: Content is a duplicate of {existing}"),
                "errorDetails": {"inputErrors": [{
                    "description": "Duplicate post is detected",
                    "input": {},
                    "code": "DUPLICATE_POST",
                }]},
                "status": 422,
            })));
        }
        if inner.posts_today(&ctx.caller.member_id) >= state.config.posts_per_day as usize {
            return Err(too_many_requests(Some("MEMBER")));
        }
        let id = inner.next_id();
        let urn = if content.kind == "video" {
            format!("urn:li:ugcPost:{id}")
        } else {
            format!("urn:li:share:{id}")
        };
        inner.posts.push(Post {
            urn: urn.clone(),
            author,
            created_by: ctx.caller.member_id.clone(),
            commentary,
            text,
            truncated,
            visibility,
            lifecycle_state: lifecycle,
            content_kind: content.kind.to_owned(),
            media: content.media,
            content_title: content.title,
            article_url: content.article_url,
            linkedin_version: ctx.version.clone(),
            created_at: chrono::Utc::now(),
            content: content_json,
            distribution: body["distribution"].clone(),
        });
        Ok(urn)
    }
}

/// Whether the caller may list `author`'s posts: their own with `r_member_social`, an
/// organisation's with a role there and `r_organization_social`.
fn may_list(state: &LinkedInState, caller: &Caller, author: &str) -> bool {
    if author == caller.urn() {
        return caller.has("r_member_social");
    }
    author.starts_with("urn:li:organization:")
        && caller.has("r_organization_social")
        && state.lock().may_read(&state.config, caller, author)
}

/// `GET /rest/posts?q=author&author={urn}[&count=][&start=][&sortBy=]`: newest first.
pub(crate) async fn list_posts(state: web::Data<LinkedInState>, req: HttpRequest) -> HttpResponse {
    let ctx = match guard(&state, &req, LinkedInEndpoint::ListPosts, true).await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let q = params(&req, &[]);
    if param(&q, "q") != Some("author") {
        return bad_request("This resource supports the finder q=author");
    }
    let Some(author) = param(&q, "author") else {
        return bad_request("The author parameter is required");
    };
    if !may_list(&state, &ctx.caller, author) {
        return access_denied(&format!(
            "partnerApiPostsExternal.FINDER-author.{}",
            printed_version(&ctx)
        ));
    }
    let start: usize = param(&q, "start").and_then(|s| s.parse().ok()).unwrap_or(0);
    let count: usize = param(&q, "count")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
        .clamp(1, 100);
    let (elements, total) = {
        let inner = state.lock();
        let all: Vec<&Post> = inner
            .posts
            .iter()
            .rev()
            .filter(|p| p.author == author)
            .collect();
        let total = all.len();
        let page: Vec<Value> = all
            .into_iter()
            .skip(start)
            .take(count)
            .map(post_json)
            .collect();
        (page, total)
    };
    let body = json!({
        "paging": {"start": start, "count": count, "links": [], "total": total},
        "elements": elements,
    });
    finish(&ctx, HttpResponse::Ok().json(body)).await
}

/// `GET /rest/posts/{urn}`.
pub(crate) async fn get_post(
    state: web::Data<LinkedInState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let ctx = match guard(&state, &req, LinkedInEndpoint::ListPosts, true).await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let urn = path.into_inner();
    let post = state.lock().posts.iter().find(|p| p.urn == urn).cloned();
    match post {
        Some(p) if state.lock().may_read(&state.config, &ctx.caller, &p.author) => {
            finish(&ctx, HttpResponse::Ok().json(post_json(&p))).await
        }
        _ => rest_error(
            StatusCode::NOT_FOUND,
            None,
            Some("RESOURCE_NOT_FOUND"),
            &format!("{urn} does not exist"),
        ),
    }
}
