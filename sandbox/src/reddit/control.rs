//! Sandbox-only control routes: fault injection and the state dump.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{RedditEndpoint, RedditState};
use crate::faults::Fault;

/// Body of `POST /reddit/_sandbox/faults`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    endpoint: RedditEndpoint,
    fault: Fault,
    #[serde(default = "one")]
    times: u32,
}

fn one() -> u32 {
    1
}

fn control_error(detail: String) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({ "error": detail }))
}

/// `POST /_sandbox/faults`: queues a fault.
pub(crate) async fn add_fault(state: web::Data<RedditState>, body: web::Bytes) -> HttpResponse {
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
pub(crate) async fn list_faults(state: web::Data<RedditState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "faults": state.pending_faults() }))
}

/// `DELETE /_sandbox/faults`: drops every queued fault.
pub(crate) async fn clear_faults(state: web::Data<RedditState>) -> HttpResponse {
    let cleared = state.clear_faults();
    HttpResponse::Ok().json(json!({ "cleared": cleared }))
}

/// `GET /_sandbox/state`: read-only dump of posts, assets, tokens and requests.
pub(crate) async fn state(state: web::Data<RedditState>) -> HttpResponse {
    HttpResponse::Ok().json(state.snapshot())
}
