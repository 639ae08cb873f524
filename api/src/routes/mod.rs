//! HTTP routes. Commands go to aggregates; queries read projections only.
use actix_web::http::StatusCode;
use actix_web::{error::JsonPayloadError, web, HttpRequest};

use crate::problem::ApiError;

pub mod analytics;
pub mod connections;
pub mod health;
pub mod jobs;
pub mod subscriptions;
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
    .service(resource("/healthz", "GET").route(web::get().to(health::healthz)))
    .service(resource("/readyz", "GET").route(web::get().to(health::readyz)))
    .service(resource("/metrics", "GET").route(web::get().to(crate::metrics::scrape)))
    .service(
        web::scope("/api/v1/analytics")
            .service(resource("/summary", "GET").route(web::get().to(analytics::summary)))
            .service(resource("/timeseries", "GET").route(web::get().to(analytics::timeseries)))
            .service(resource("/errors", "GET").route(web::get().to(analytics::errors))),
    )
    .service(
        web::scope("/api/v1/platforms")
            .service(resource("/connections", "GET").route(web::get().to(connections::list)))
            .service(
                resource("/connections/{id}/history", "GET")
                    .route(web::get().to(connections::history)),
            )
            .service(resource("/publish", "POST").route(web::post().to(jobs::publish)))
            .service(resource("/schedule", "POST").route(web::post().to(jobs::schedule)))
            .service(resource("/jobs", "GET").route(web::get().to(jobs::list)))
            .service(
                resource("/jobs/{id}", "GET, DELETE")
                    .route(web::get().to(jobs::get))
                    .route(web::delete().to(jobs::cancel)),
            )
            .service(resource("/jobs/{id}/retry", "POST").route(web::post().to(jobs::retry)))
            .service(resource("/jobs/{id}/history", "GET").route(web::get().to(jobs::history)))
            .service(
                resource("/{platform}/connect", "POST").route(web::post().to(connections::connect)),
            )
            .service(
                resource("/{platform}/connect/complete", "POST")
                    .route(web::post().to(connections::complete)),
            )
            .service(
                resource("/{platform}/callback", "GET").route(web::get().to(connections::callback)),
            )
            .service(
                resource("/{platform}/disconnect", "DELETE")
                    .route(web::delete().to(connections::disconnect)),
            ),
    )
    // Before `/api/v1/webhooks/{platform}`, which would otherwise take `subscriptions`.
    .service(
        web::scope("/api/v1/webhooks/subscriptions")
            .service(
                resource("", "GET, POST")
                    .route(web::get().to(subscriptions::list))
                    .route(web::post().to(subscriptions::create)),
            )
            .service(
                resource("/{id}", "GET, DELETE")
                    .route(web::get().to(subscriptions::get))
                    .route(web::delete().to(subscriptions::delete)),
            )
            .service(resource("/{id}/enable", "POST").route(web::post().to(subscriptions::enable)))
            .service(
                resource("/{id}/deliveries", "GET").route(web::get().to(subscriptions::deliveries)),
            )
            .service(
                resource("/{id}/deliveries/{delivery_id}/redeliver", "POST")
                    .route(web::post().to(subscriptions::redeliver)),
            )
            .service(resource("/{id}/replay", "POST").route(web::post().to(subscriptions::replay))),
    )
    .service(
        resource("/api/v1/webhooks/{platform}", "POST").route(web::post().to(webhooks::receive)),
    )
    .default_service(web::to(|| async {
        Err::<actix_web::HttpResponse, _>(ApiError::new(
            actix_web::http::StatusCode::NOT_FOUND,
            "not-found",
            "no such route; the API lives under /api/v1/platforms",
        ))
    }));
}

/// A path whose other methods answer 405 with `Allow: allow`, as problem+json.
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || async move {
        Err::<actix_web::HttpResponse, _>(
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                format!("this path takes {allow}"),
            )
            .with_header("Allow", allow),
        )
    }))
}

fn json_error(error: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    match &error {
        JsonPayloadError::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "send the body as JSON with 'Content-Type: application/json'",
        ),
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            format!("the body is larger than {limit} bytes"),
        ),
        other => ApiError::bad_request(
            "validation-error",
            format!("the body is not valid: {other}"),
        ),
    }
    .into()
}
