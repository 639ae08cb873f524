//! Liveness and readiness.
use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::problem::ApiError;
use crate::runtime::Herald;

/// The process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The process can serve: its database answers and its event log can be used. Says how many
/// committed events wait for the relay (Kafka). Anyone may ask, so a failure is named, not
/// described: the cause goes to the log.
pub async fn readyz(herald: web::Data<Herald>) -> Result<HttpResponse, ApiError> {
    if let Err(error) = sqlx::query("SELECT 1").execute(&herald.db.any).await {
        tracing::warn!(%error, "not ready: the database does not answer");
        return Err(ApiError::unavailable("the database is not reachable"));
    }
    let relay_lag = match herald.log.readiness(&herald.db).await {
        Ok(lag) => lag,
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "not ready: the event log cannot be used");
            return Err(ApiError::unavailable("the event log is not reachable"));
        }
    };
    Ok(HttpResponse::Ok().json(json!({
        "status": "ready",
        "database": "ok",
        "event_log": "ok",
        "relay_lag": relay_lag,
    })))
}
