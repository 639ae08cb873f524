//! Sandbox-only control routes: fault injection, the state dump, quota and session control.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::YouTubeState;
use crate::twin::control_error;

/// Body of `POST /youtube/_sandbox/quota`: today's usage to set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaRequest {
    units_used: Option<u64>,
    inserts: Option<u64>,
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
