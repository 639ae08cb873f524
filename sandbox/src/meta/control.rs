//! Sandbox-only control routes: fault injection and the state dump.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{MetaState, MetaUserSpec};
use crate::twin::control_error;

/// `POST /_sandbox/users`: declares a user's Pages and linked Instagram accounts (replacing
/// the Pages of a user already known).
pub(crate) async fn define_user(state: web::Data<MetaState>, body: web::Bytes) -> HttpResponse {
    let spec: MetaUserSpec = match serde_json::from_slice(&body) {
        Ok(spec) => spec,
        Err(e) => return control_error(format!("invalid user: {e}")),
    };
    if spec.username.trim().is_empty() {
        return control_error("username must not be empty".into());
    }
    let id = state.define_user(&spec);
    HttpResponse::Ok().json(json!({ "id": id, "username": spec.username }))
}
