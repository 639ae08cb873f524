//! Sandbox-only control routes: fault injection, the state dump, quota and session control.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{YouTubeEndpoint, YouTubeState};
use crate::faults::Fault;

/// Body of `POST /youtube/_sandbox/faults`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    endpoint: YouTubeEndpoint,
    fault: Fault,
    #[serde(default = "one")]
    times: u32,
}

fn one() -> u32 {
    1
}

/// Body of `POST /youtube/_sandbox/quota`: today's usage to set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaRequest {
    units_used: Option<u64>,
    inserts: Option<u64>,
}

fn control_error(detail: String) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({ "error": detail }))
}

/// `POST /_sandbox/faults`: queues a fault.
pub(crate) async fn add_fault(state: web::Data<YouTubeState>, body: web::Bytes) -> HttpResponse {
    let req: FaultRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return control_error(format!("invalid fault request: {e}")),
    };
    if let Err(e) = req.fault.validate() {
        return control_error(e);
    }
    state.inject_fault(req.endpoint, req.fault.clone(), req.times);
    HttpResponse::Ok().json(json!({
        "queued": true,
        "endpoint": req.endpoint,
        "fault": req.fault,
        "times": req.times,
    }))
}

/// `GET /_sandbox/faults`: faults still queued.
pub(crate) async fn list_faults(state: web::Data<YouTubeState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "faults": state.pending_faults() }))
}

/// `DELETE /_sandbox/faults`: drops every queued fault.
pub(crate) async fn clear_faults(state: web::Data<YouTubeState>) -> HttpResponse {
    let cleared = state.clear_faults();
    HttpResponse::Ok().json(json!({ "cleared": cleared }))
}

/// `GET /_sandbox/state`: read-only dump of videos, sessions, byte ranges, tokens, quota and
/// requests.
pub(crate) async fn state(state: web::Data<YouTubeState>) -> HttpResponse {
    HttpResponse::Ok().json(state.snapshot())
}

/// `GET /_sandbox/quota`: today's quota usage.
pub(crate) async fn quota(state: web::Data<YouTubeState>) -> HttpResponse {
    HttpResponse::Ok().json(state.quota_snapshot())
}

/// `POST /_sandbox/quota`: sets today's usage (`units_used`, `inserts`).
pub(crate) async fn set_quota(state: web::Data<YouTubeState>, body: web::Bytes) -> HttpResponse {
    let req: QuotaRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return control_error(format!("invalid quota request: {e}")),
    };
    state.set_quota_usage(req.units_used, req.inserts);
    HttpResponse::Ok().json(state.quota_snapshot())
}

/// `POST /_sandbox/expire_sessions`: every open upload session answers 404 from now on.
pub(crate) async fn expire_sessions(state: web::Data<YouTubeState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "expired": state.expire_sessions() }))
}
