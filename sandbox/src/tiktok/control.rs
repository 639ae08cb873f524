//! Sandbox-only control routes: generic faults, TikTok error codes, fail reasons, creator
//! settings, inbox completion and the state dump.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::state::{InjectedError, Mode};
use super::{documented_status, TiktokEndpoint, TiktokState};
use crate::twin::{control_error, one};

/// Body of `POST /tiktok/_sandbox/errors`: answer `endpoint` with TikTok's `code`, at its
/// documented HTTP status unless `http_status` says otherwise.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorRequest {
    endpoint: TiktokEndpoint,
    code: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    http_status: Option<u16>,
    #[serde(default = "one")]
    times: u32,
}

/// Body of `POST /tiktok/_sandbox/fail_reasons`: the next `times` publishes end `FAILED` with
/// `fail_reason` once processed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailReasonRequest {
    fail_reason: String,
    #[serde(default = "one")]
    times: u32,
}

/// Body of `POST /tiktok/_sandbox/creators`: settings of the creator `username` (created if new).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatorRequest {
    username: String,
    private: Option<bool>,
    comment_disabled: Option<bool>,
    duet_disabled: Option<bool>,
    stitch_disabled: Option<bool>,
    max_video_post_duration_sec: Option<u32>,
    banned: Option<bool>,
}

/// Body of `POST /tiktok/_sandbox/inbox/complete`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteRequest {
    publish_id: String,
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, HttpResponse> {
    serde_json::from_slice(body).map_err(|e| control_error(format!("invalid request: {e}")))
}

/// `POST /_sandbox/errors`: queues a TikTok error code for an endpoint.
pub(crate) async fn add_error(state: web::Data<TiktokState>, body: web::Bytes) -> HttpResponse {
    let req: ErrorRequest = match parse(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if req.endpoint == TiktokEndpoint::Any {
        return control_error("errors are queued for one endpoint, not `any`".into());
    }
    let status = match req.http_status {
        Some(s) => match StatusCode::from_u16(s) {
            Ok(s) => s,
            Err(_) => return control_error(format!("invalid http_status {s}")),
        },
        None => documented_status(req.endpoint, &req.code),
    };
    let message = req
        .message
        .unwrap_or_else(|| format!("Sandbox-injected error {}.", req.code));
    state.inject_error(
        req.endpoint,
        InjectedError {
            code: req.code.clone(),
            message,
            status,
        },
        req.times,
    );
    HttpResponse::Ok().json(json!({
        "queued": true, "endpoint": req.endpoint, "code": req.code,
        "http_status": status.as_u16(), "times": req.times,
    }))
}

/// `POST /_sandbox/fail_reasons`: the next publishes fail with a `fail_reason`.
pub(crate) async fn add_fail_reason(
    state: web::Data<TiktokState>,
    body: web::Bytes,
) -> HttpResponse {
    let req: FailReasonRequest = match parse(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if req.times > 0 {
        state
            .lock()
            .fail_reasons
            .push_back((req.fail_reason.clone(), req.times));
    }
    HttpResponse::Ok()
        .json(json!({ "queued": true, "fail_reason": req.fail_reason, "times": req.times }))
}

/// `POST /_sandbox/creators`: changes a creator's account settings.
pub(crate) async fn set_creator(state: web::Data<TiktokState>, body: web::Bytes) -> HttpResponse {
    let req: CreatorRequest = match parse(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let mut inner = state.lock();
    let mut c = inner.creator_by_username(&req.username);
    c.private = req.private.unwrap_or(c.private);
    c.comment_disabled = req.comment_disabled.unwrap_or(c.comment_disabled);
    c.duet_disabled = req.duet_disabled.unwrap_or(c.duet_disabled);
    c.stitch_disabled = req.stitch_disabled.unwrap_or(c.stitch_disabled);
    c.max_video_post_duration_sec = req
        .max_video_post_duration_sec
        .unwrap_or(c.max_video_post_duration_sec);
    c.banned = req.banned.unwrap_or(c.banned);
    let body = json!({
        "open_id": c.open_id, "username": c.username, "private": c.private,
        "privacy_level_options": c.privacy_level_options(), "banned": c.banned,
    });
    inner.creators.insert(c.open_id.clone(), c);
    HttpResponse::Ok().json(body)
}

/// `POST /_sandbox/inbox/complete`: the creator finished an inbox draft in the app.
pub(crate) async fn complete_inbox(
    state: web::Data<TiktokState>,
    body: web::Bytes,
) -> HttpResponse {
    let req: CompleteRequest = match parse(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let mut inner = state.lock();
    match inner
        .publishes
        .iter_mut()
        .find(|p| p.publish_id == req.publish_id && p.mode == Mode::Inbox)
    {
        Some(p) => {
            p.inbox_completed = true;
            HttpResponse::Ok().json(json!({ "completed": req.publish_id }))
        }
        None => control_error(format!("no inbox publish {}", req.publish_id)),
    }
}

/// Body of `PUT /tiktok/_sandbox/webhook`: the app's callback URL (TikTok: set in the
/// developer portal).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookRequest {
    url: Option<String>,
}

/// `PUT /_sandbox/webhook`: sets (or, with `null`, clears) where deliveries go.
pub(crate) async fn set_webhook(state: web::Data<TiktokState>, body: web::Bytes) -> HttpResponse {
    let req: WebhookRequest = match parse(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if let Some(url) = &req.url {
        if let Err(refused) = crate::outbound::loopback_only(url) {
            return control_error(refused);
        }
    }
    state.lock().webhook_url.clone_from(&req.url);
    HttpResponse::Ok().json(json!({ "url": req.url }))
}

/// Body of `POST /tiktok/_sandbox/deauthorize`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeauthorizeRequest {
    username: String,
    /// TikTok's `authorization.removed` reason (0-5; 1: the user disconnected the app).
    #[serde(default = "one_i64")]
    reason: i64,
}

fn one_i64() -> i64 {
    1
}

/// `POST /_sandbox/deauthorize`: the creator removes the app, as from TikTok's settings: every
/// token of theirs stops working, and `authorization.removed` is delivered to the webhook URL.
pub(crate) async fn deauthorize(state: web::Data<TiktokState>, body: web::Bytes) -> HttpResponse {
    let req: DeauthorizeRequest = match parse(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let delivered = state.remove_authorization(&req.username, req.reason).await;
    HttpResponse::Ok().json(json!({ "delivered_status": delivered }))
}
