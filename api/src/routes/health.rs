//! Liveness and readiness.
use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::problem::ApiError;
use crate::runtime::Herald;

/// The process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The process can serve: its database answers.
pub async fn readyz(herald: web::Data<Herald>) -> Result<HttpResponse, ApiError> {
    sqlx::query("SELECT 1")
        .execute(&herald.db.any)
        .await
        .map_err(|e| ApiError::unavailable(format!("the database is not reachable: {e}")))?;
    Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
}
