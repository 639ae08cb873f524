//! Media upload (platform-facts §1.4): the dedicated chunked endpoints, the
//! STATUS poll, and the one-shot / legacy command-style `POST /2/media/upload`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::state::{Media, ProcState, Processing, XInner};
use super::{finish, guard, param, query_pairs, Ctx, Problem, XEndpoint, XState};
use crate::faults::{self, Fault};
use crate::multipart;

/// Upload sessions expire a day after INIT.
const EXPIRES_AFTER_SECS: i64 = 86_400;
const MB: u64 = 1024 * 1024;

const MEDIA_TYPES: &[&str] = &[
    "video/mp4",
    "video/webm",
    "video/mp2t",
    "video/quicktime",
    "text/srt",
    "text/vtt",
    "image/jpeg",
    "image/gif",
    "image/bmp",
    "image/png",
    "image/webp",
    "image/pjpeg",
    "image/tiff",
    "model/gltf-binary",
    "model/vnd.usdz+zip",
];

const CATEGORIES: &[&str] = &[
    "amplify_video",
    "tweet_gif",
    "tweet_image",
    "tweet_video",
    "dm_gif",
    "dm_image",
    "dm_video",
    "subtitles",
];

const INVALID_MEDIA: &str = "Invalid or Unsupported media, Reason: UnsupportedMedia.";

/// Body of `POST /2/media/upload/initialize` (`InitializeMediaUploadRequest`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InitRequest {
    media_type: Option<String>,
    total_bytes: Option<u64>,
    media_category: Option<String>,
    #[serde(default)]
    #[allow(dead_code)] // accepted for shape compatibility; ownership sharing is not simulated
    additional_owners: Vec<String>,
    #[allow(dead_code)]
    shared: Option<bool>,
}

/// JSON body of append (`AppendMediaUploadRequest` with base64 `media`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppendJson {
    media: String,
    segment_index: i64,
}

fn is_video_category(c: &str) -> bool {
    matches!(c, "tweet_video" | "dm_video" | "amplify_video")
}

fn is_gif_category(c: &str) -> bool {
    matches!(c, "tweet_gif" | "dm_gif")
}

/// The category X would assume when none is given.
fn default_category(media_type: &str) -> &'static str {
    match media_type {
        "image/gif" => "tweet_gif",
        t if t.starts_with("video/") => "tweet_video",
        t if t.starts_with("text/") => "subtitles",
        _ => "tweet_image",
    }
}

fn compatible(media_type: &str, category: &str) -> bool {
    match category {
        "tweet_image" | "dm_image" => {
            media_type.starts_with("image/") || media_type.starts_with("model/")
        }
        "tweet_gif" | "dm_gif" => media_type == "image/gif",
        "subtitles" => media_type.starts_with("text/"),
        _ => media_type.starts_with("video/"),
    }
}

/// Size limit per category (platform-facts §1.4: image 5 MB, GIF 15 MB, video 512 MB).
fn size_limit(category: &str) -> u64 {
    if is_video_category(category) {
        512 * MB
    } else if is_gif_category(category) {
        15 * MB
    } else {
        5 * MB
    }
}

fn media_key_prefix(category: &str) -> u32 {
    match category {
        "amplify_video" => 13,
        c if is_video_category(c) => 7,
        c if is_gif_category(c) => 16,
        _ => 3,
    }
}

fn parse_media_id(raw: &str) -> Result<u64, Problem> {
    let valid = (1..=19).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit());
    raw.parse().ok().filter(|_| valid).ok_or_else(|| {
        Problem::invalid_request(format!("The media_id [{raw}] is not a valid media id."))
    })
}

/// The caller's media `id`; other users' media is reported as not found.
fn owned_media<'a>(inner: &'a mut XInner, owner: &str, id: u64) -> Result<&'a mut Media, Problem> {
    inner
        .media
        .get_mut(&id)
        .filter(|m| m.owner == owner)
        .ok_or_else(|| Problem::invalid_request(format!("Media id [{id}] was not found.")))
}

fn expires_after(m: &Media) -> i64 {
    (m.created_epoch + EXPIRES_AFTER_SECS - crate::epoch_now()).max(0)
}

/// Records a processing fault on media (before FINALIZE it is kept for later).
fn apply_media_fault(m: &mut Media, fault: Option<&Fault>) {
    let Some(fault) = fault else { return };
    let now = Instant::now();
    match (fault, m.processing.as_mut()) {
        (Fault::SlowProcessing { secs }, None) => m.pending_slow = Some(faults::secs(*secs)),
        (Fault::RejectMedia, None) => m.pending_reject = true,
        (Fault::SlowProcessing { secs }, Some(p)) => {
            p.duration = now.saturating_duration_since(p.started) + faults::secs(*secs);
        }
        (Fault::RejectMedia, Some(p)) => p.fail = true,
        _ => {}
    }
}

fn processing_info(state: ProcState) -> Value {
    match state {
        ProcState::InProgress {
            percent,
            check_after,
        } => {
            json!({"state": "in_progress", "check_after_secs": check_after, "progress_percent": percent})
        }
        ProcState::Succeeded => json!({"state": "succeeded", "progress_percent": 100}),
        ProcState::Failed => json!({
            "state": "failed",
            "progress_percent": 100,
            "error": {"code": 1, "name": "InvalidMedia", "message": INVALID_MEDIA},
        }),
    }
}

impl XState {
    fn media_init(
        &self,
        owner: &str,
        req: InitRequest,
        fault: Option<&Fault>,
    ) -> Result<Value, Problem> {
        let media_type = req
            .media_type
            .ok_or_else(|| Problem::invalid_request("The media_type field is required."))?;
        if !MEDIA_TYPES.contains(&media_type.as_str()) {
            return Err(Problem::invalid_request(format!(
                "The media_type [{media_type}] is not one of [{}].",
                MEDIA_TYPES.join(",")
            )));
        }
        let category = match req.media_category {
            Some(c) if CATEGORIES.contains(&c.as_str()) => c,
            Some(c) => {
                return Err(Problem::invalid_request(format!(
                    "The media_category [{c}] is not one of [{}].",
                    CATEGORIES.join(",")
                )))
            }
            None => default_category(&media_type).to_owned(),
        };
        if !compatible(&media_type, &category) {
            return Err(Problem::invalid_request(format!(
                "The media_type [{media_type}] cannot be uploaded with media_category [{category}]."
            )));
        }
        let total_bytes = req
            .total_bytes
            .ok_or_else(|| Problem::invalid_request("The total_bytes field is required."))?;
        let limit = size_limit(&category);
        if total_bytes > limit {
            return Err(Problem::invalid_request(format!(
                "total_bytes [{total_bytes}] exceeds the {} MB limit for media_category [{category}].",
                limit / MB
            )));
        }

        let mut inner = self.lock();
        let id = inner.next_id();
        let mut media = Media {
            id,
            media_key: format!("{}_{id}", media_key_prefix(&category)),
            owner: owner.to_owned(),
            async_processing: is_video_category(&category) || is_gif_category(&category),
            media_type,
            category,
            total_bytes,
            segments: BTreeMap::new(),
            created_epoch: crate::epoch_now(),
            pending_slow: None,
            pending_reject: false,
            processing: None,
        };
        apply_media_fault(&mut media, fault);
        let body = json!({"data": {
            "id": id.to_string(),
            "media_key": media.media_key,
            "expires_after_secs": EXPIRES_AFTER_SECS,
        }});
        inner.media.insert(id, media);
        Ok(body)
    }

    fn media_append(
        &self,
        owner: &str,
        id: &str,
        segment_index: i64,
        len: u64,
        fault: Option<&Fault>,
    ) -> Result<Value, Problem> {
        let id = parse_media_id(id)?;
        if !(0..=999).contains(&segment_index) {
            return Err(Problem::invalid_request(format!(
                "The segment_index [{segment_index}] must be between 0 and 999."
            )));
        }
        let mut inner = self.lock();
        let m = owned_media(&mut inner, owner, id)?;
        if m.processing.is_some() {
            return Err(Problem::invalid_request(format!(
                "Media id [{id}] is already finalized."
            )));
        }
        m.segments.insert(segment_index as u32, len);
        apply_media_fault(m, fault);
        Ok(json!({"data": {"expires_at": m.created_epoch + EXPIRES_AFTER_SECS}}))
    }

    fn media_finalize(
        &self,
        owner: &str,
        id: &str,
        fault: Option<&Fault>,
    ) -> Result<Value, Problem> {
        let id = parse_media_id(id)?;
        let delay = self.config.media_processing_delay;
        let mut inner = self.lock();
        let m = owned_media(&mut inner, owner, id)?;
        let now = Instant::now();
        if m.processing.is_none() {
            let received = m.bytes_received();
            if received != m.total_bytes {
                return Err(Problem::invalid_request(format!(
                    "Media id [{id}]: received {received} bytes in {} segment(s), but total_bytes is {}.",
                    m.segments.len(),
                    m.total_bytes
                )));
            }
            apply_media_fault(m, fault);
            let default = if m.async_processing {
                delay
            } else {
                Duration::ZERO
            };
            m.processing = Some(Processing {
                started: now,
                duration: m.pending_slow.unwrap_or(default),
                fail: m.pending_reject,
            });
            if m.pending_slow.is_some() {
                // Slow processing makes even an image asynchronous.
                m.async_processing = true;
            }
        } else {
            // Repeated FINALIZE (e.g. a client retry after a timeout) is idempotent.
            apply_media_fault(m, fault);
        }
        let proc_state = m.proc_state(now).unwrap_or(ProcState::Succeeded);
        if !m.async_processing && proc_state == ProcState::Failed {
            return Err(Problem::invalid_request(INVALID_MEDIA));
        }
        let mut data = json!({
            "id": id.to_string(),
            "media_key": m.media_key,
            "size": m.total_bytes,
            "expires_after_secs": expires_after(m),
        });
        if m.async_processing {
            data["processing_info"] = match proc_state {
                ProcState::InProgress { .. }
                    if m.processing.as_ref().is_some_and(|p| p.started == now) =>
                {
                    json!({"state": "pending", "check_after_secs": 1})
                }
                s => processing_info(s),
            };
        }
        Ok(json!({ "data": data }))
    }

    fn media_status(&self, owner: &str, id: &str, fault: Option<&Fault>) -> Result<Value, Problem> {
        let id = parse_media_id(id)?;
        let mut inner = self.lock();
        let m = owned_media(&mut inner, owner, id)?;
        apply_media_fault(m, fault);
        let Some(state) = m.proc_state(Instant::now()) else {
            return Err(Problem::invalid_request(format!(
                "Media id [{id}] has not been finalized."
            )));
        };
        Ok(json!({"data": {
            "id": id.to_string(),
            "media_key": m.media_key,
            "size": m.total_bytes,
            "expires_after_secs": expires_after(m),
            "processing_info": processing_info(state),
        }}))
    }

    /// One-shot upload: INIT + APPEND + FINALIZE in one request.
    fn media_one_shot(
        &self,
        owner: &str,
        media_type: Option<String>,
        category: Option<String>,
        data: &[u8],
        fault: Option<&Fault>,
    ) -> Result<Value, Problem> {
        let category = category
            .ok_or_else(|| Problem::invalid_request("The media_category field is required."))?;
        let media_type = media_type.unwrap_or_else(|| {
            match category.as_str() {
                "subtitles" => "text/srt",
                c if is_video_category(c) => "video/mp4",
                c if is_gif_category(c) => "image/gif",
                _ => "image/jpeg",
            }
            .to_owned()
        });
        let init = self.media_init(
            owner,
            InitRequest {
                media_type: Some(media_type),
                total_bytes: Some(data.len() as u64),
                media_category: Some(category),
                additional_owners: Vec::new(),
                shared: None,
            },
            fault,
        )?;
        let id = init["data"]["id"].as_str().unwrap_or_default().to_owned();
        self.media_append(owner, &id, 0, data.len() as u64, None)?;
        self.media_finalize(owner, &id, None)
    }
}

fn respond(result: Result<Value, Problem>) -> HttpResponse {
    match result {
        Ok(body) => HttpResponse::Ok().json(body),
        Err(p) => p.response(),
    }
}

async fn media_guard(
    state: &XState,
    req: &HttpRequest,
    endpoint: XEndpoint,
) -> Result<Ctx, HttpResponse> {
    guard(state, req, endpoint, &["media.write"]).await
}

fn json_problem(e: serde_json::Error) -> Problem {
    Problem::invalid_request(format!("The request body is not valid: {e}"))
}

fn decode_base64(s: &str) -> Result<Vec<u8>, Problem> {
    let s = s.trim();
    STANDARD
        .decode(s)
        .or_else(|_| URL_SAFE.decode(s))
        .map_err(|_| Problem::invalid_request("The media field is not valid base64."))
}

/// `POST /2/media/upload/initialize`.
pub(crate) async fn initialize(
    state: web::Data<XState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let ctx = match media_guard(&state, &req, XEndpoint::MediaInitialize).await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let result = serde_json::from_slice::<InitRequest>(&body)
        .map_err(json_problem)
        .and_then(|r| state.media_init(&ctx.caller.user_id, r, ctx.fault.as_ref()));
    finish(ctx, respond(result)).await
}

/// The request body as named fields, whatever the encoding.
struct Fields {
    values: HashMap<String, web::Bytes>,
    /// In JSON and url-encoded bodies binary `media` arrives base64-encoded.
    media_is_base64: bool,
}

impl Fields {
    fn parse(req: &HttpRequest, body: &web::Bytes) -> Result<Self, Problem> {
        let ct = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        if let Some(boundary) = multipart::boundary(ct) {
            let parts = multipart::parse(body, &boundary).map_err(Problem::invalid_request)?;
            return Ok(Self {
                values: parts.into_iter().map(|p| (p.name, p.data)).collect(),
                media_is_base64: false,
            });
        }
        let mime = ct.split(';').next().unwrap_or_default().trim();
        if mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            let values = url::form_urlencoded::parse(body)
                .into_owned()
                .map(|(k, v)| (k, web::Bytes::from(v)))
                .collect();
            return Ok(Self {
                values,
                media_is_base64: true,
            });
        }
        let json: serde_json::Map<String, Value> =
            serde_json::from_slice(body).map_err(json_problem)?;
        let values = json
            .into_iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, web::Bytes::from(text))
            })
            .collect();
        Ok(Self {
            values,
            media_is_base64: true,
        })
    }

    fn text(&self, name: &str) -> Option<String> {
        self.values
            .get(name)
            .and_then(|b| std::str::from_utf8(b).ok())
            .map(|s| s.trim().to_owned())
    }

    fn int(&self, name: &str) -> Result<Option<i64>, Problem> {
        self.text(name)
            .map(|s| {
                s.parse::<i64>().map_err(|_| {
                    Problem::invalid_request(format!("The {name} field must be an integer."))
                })
            })
            .transpose()
    }

    /// The binary `media` (or v1.1-style base64 `media_data`).
    fn media(&self) -> Result<Vec<u8>, Problem> {
        if let Some(b64) = self.text("media_data") {
            return decode_base64(&b64);
        }
        let raw = self
            .values
            .get("media")
            .ok_or_else(|| Problem::invalid_request("The media field is required."))?;
        if self.media_is_base64 {
            decode_base64(std::str::from_utf8(raw).unwrap_or_default())
        } else {
            Ok(raw.to_vec())
        }
    }
}

/// `POST /2/media/upload/{id}/append` (multipart or JSON with base64 `media`).
pub(crate) async fn append(
    state: web::Data<XState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let ctx = match media_guard(&state, &req, XEndpoint::MediaAppend).await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let is_json = !req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("multipart/"));
    let parsed = if is_json {
        // Strict JSON per the spec (additionalProperties: false).
        serde_json::from_slice::<AppendJson>(&body)
            .map_err(json_problem)
            .and_then(|a| Ok((decode_base64(&a.media)?, a.segment_index)))
    } else {
        Fields::parse(&req, &body).and_then(|f| {
            let seg = f
                .int("segment_index")?
                .ok_or_else(|| Problem::invalid_request("The segment_index field is required."))?;
            Ok((f.media()?, seg))
        })
    };
    let result = parsed.and_then(|(data, seg)| {
        state.media_append(
            &ctx.caller.user_id,
            &id,
            seg,
            data.len() as u64,
            ctx.fault.as_ref(),
        )
    });
    finish(ctx, respond(result)).await
}

/// `POST /2/media/upload/{id}/finalize`.
pub(crate) async fn finalize(
    state: web::Data<XState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    let ctx = match media_guard(&state, &req, XEndpoint::MediaFinalize).await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let result = state.media_finalize(&ctx.caller.user_id, &id, ctx.fault.as_ref());
    finish(ctx, respond(result)).await
}

/// `GET /2/media/upload?command=STATUS&media_id=...`.
pub(crate) async fn status(state: web::Data<XState>, req: HttpRequest) -> HttpResponse {
    let ctx = match media_guard(&state, &req, XEndpoint::MediaStatus).await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let q = query_pairs(&req);
    let result = match (param(&q, "command"), param(&q, "media_id")) {
        (Some(c), _) if c != "STATUS" => Err(Problem::invalid_request(format!(
            "The command [{c}] is not one of [STATUS]."
        ))),
        (_, None) => Err(Problem::invalid_request(
            "The media_id query parameter is required.",
        )),
        (_, Some(id)) => state.media_status(&ctx.caller.user_id, id, ctx.fault.as_ref()),
    };
    finish(ctx, respond(result)).await
}

/// `POST /2/media/upload`: one-shot upload, or the command-style chunked flow
/// (`command=INIT|APPEND|FINALIZE`) that X's docs quickstart still shows.
pub(crate) async fn upload(
    state: web::Data<XState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let fields = match Fields::parse(&req, &body) {
        Ok(f) => f,
        Err(p) => return p.response(),
    };
    let command = fields.text("command").map(|c| c.to_ascii_uppercase());
    let endpoint = match command.as_deref() {
        None => XEndpoint::MediaUpload,
        Some("INIT") => XEndpoint::MediaInitialize,
        Some("APPEND") => XEndpoint::MediaAppend,
        Some("FINALIZE") => XEndpoint::MediaFinalize,
        Some(other) => {
            return Problem::invalid_request(format!(
                "The command [{other}] is not one of [INIT,APPEND,FINALIZE]."
            ))
            .response()
        }
    };
    let ctx = match media_guard(&state, &req, endpoint).await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let owner = ctx.caller.user_id.clone();
    let fault = ctx.fault.as_ref();
    let media_id = || {
        fields
            .text("media_id")
            .ok_or_else(|| Problem::invalid_request("The media_id field is required."))
    };
    let result = match endpoint {
        XEndpoint::MediaInitialize => fields.int("total_bytes").and_then(|total| {
            let total = total
                .map(|t| {
                    u64::try_from(t)
                        .map_err(|_| Problem::invalid_request("total_bytes must not be negative."))
                })
                .transpose()?;
            state.media_init(
                &owner,
                InitRequest {
                    media_type: fields.text("media_type"),
                    total_bytes: total,
                    media_category: fields.text("media_category"),
                    additional_owners: Vec::new(),
                    shared: None,
                },
                fault,
            )
        }),
        XEndpoint::MediaAppend => (|| {
            let id = media_id()?;
            let seg = fields
                .int("segment_index")?
                .ok_or_else(|| Problem::invalid_request("The segment_index field is required."))?;
            let data = fields.media()?;
            state.media_append(&owner, &id, seg, data.len() as u64, fault)
        })(),
        XEndpoint::MediaFinalize => {
            media_id().and_then(|id| state.media_finalize(&owner, &id, fault))
        }
        _ => fields.media().and_then(|data| {
            state.media_one_shot(
                &owner,
                fields.text("media_type"),
                fields.text("media_category"),
                &data,
                fault,
            )
        }),
    };
    finish(ctx, respond(result)).await
}
