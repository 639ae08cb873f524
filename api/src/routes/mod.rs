//! HTTP routes. Commands go to aggregates; queries read projections only.
use actix_web::{error::JsonPayloadError, web, HttpRequest};

use crate::problem::ApiError;

pub mod connections;
pub mod health;
pub mod jobs;
pub mod webhooks;

/// Mounts every route, with problem+json for malformed JSON, paths and queries.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(256 * 1024)
            .error_handler(json_error),
    )
    .app_data(web::QueryConfig::default().error_handler(|e, _| {
        ApiError::bad_request("validation-error", format!("invalid query parameters: {e}")).into()
    }))
    .app_data(web::PathConfig::default().error_handler(|e, _| {
        ApiError::bad_request("validation-error", format!("invalid path: {e}")).into()
    }))
    .route("/healthz", web::get().to(health::healthz))
    .route("/readyz", web::get().to(health::readyz))
    .service(
        web::scope("/api/v1/platforms")
            .route("/connections", web::get().to(connections::list))
            .route("/publish", web::post().to(jobs::publish))
            .route("/schedule", web::post().to(jobs::schedule))
            .route("/jobs", web::get().to(jobs::list))
            .route("/jobs/{id}", web::get().to(jobs::get))
            .route("/jobs/{id}", web::delete().to(jobs::cancel))
            .route("/jobs/{id}/retry", web::post().to(jobs::retry))
            .route("/jobs/{id}/history", web::get().to(jobs::history))
            .route("/{platform}/connect", web::post().to(connections::connect))
            .route(
                "/{platform}/connect/complete",
                web::post().to(connections::complete),
            )
            .route("/{platform}/callback", web::get().to(connections::callback))
            .route(
                "/{platform}/disconnect",
                web::delete().to(connections::disconnect),
            ),
    )
    .route(
        "/api/v1/webhooks/{platform}",
        web::post().to(webhooks::receive),
    )
    .default_service(web::to(|| async {
        Err::<actix_web::HttpResponse, _>(ApiError::new(
            actix_web::http::StatusCode::NOT_FOUND,
            "not-found",
            "no such route; the API lives under /api/v1/platforms",
        ))
    }));
}

fn json_error(error: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let detail = match &error {
        JsonPayloadError::ContentType => {
            "send the body as JSON with 'Content-Type: application/json'".to_string()
        }
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => {
            format!("the body is larger than {limit} bytes")
        }
        other => format!("the body is not valid: {other}"),
    };
    ApiError::bad_request("validation-error", detail).into()
}
