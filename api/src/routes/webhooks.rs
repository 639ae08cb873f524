//! Platform webhooks: `POST /api/v1/webhooks/{platform}`, the callback URL registered in the
//! platform's developer portal. Each delivery's signature is checked by the platform's adapter
//! against the app secret before anything is read; a refused delivery changes nothing.
//!
//! What a delivery means becomes a command on the aggregate it concerns (so it lands in the
//! event store and the log like any other change). Platforms deliver at least once and retry
//! until they get a 2xx, so the commands are idempotent and a failure to record answers 5xx:
//! the platform delivers again rather than Herald losing the notice.
use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use cqrs_es::AggregateError;
use herald_domain::connection::ConnectionCommand;
use herald_domain::Platform;
use herald_infrastructure::platforms::{WebhookNotice, WebhookRefusal};
use herald_infrastructure::store::CommandMetadata;
use serde_json::json;

use super::connections::{parse_platform, stored_grant};
use crate::auth::RequestId;
use crate::problem::ApiError;
use crate::runtime::Herald;

pub async fn receive(
    herald: web::Data<Herald>,
    path: web::Path<String>,
    req: HttpRequest,
    request_id: RequestId,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let platform = parse_platform(&path)?;
    let adapter = herald.adapters.get(platform).map_err(|failure| {
        ApiError::new(StatusCode::NOT_FOUND, "platform-unknown", failure.message)
    })?;
    let headers: HashMap<String, String> = req
        .headers()
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    let notice = adapter
        .read_webhook(&headers, &body, Utc::now())
        .map_err(|refusal| {
            tracing::warn!(%platform, %refusal, "webhook delivery refused");
            metrics::counter!(
                "herald_webhook_deliveries_total",
                "platform" => platform.as_str(),
                "outcome" => "refused"
            )
            .increment(1);
            match refusal {
                WebhookRefusal::NotSupported => ApiError::new(
                    StatusCode::NOT_FOUND,
                    "webhooks-not-supported",
                    format!("Herald does not receive {platform} webhooks"),
                ),
                WebhookRefusal::BadSignature(why) => ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "webhook-signature-invalid",
                    format!("the {platform} webhook was refused: {why}"),
                ),
                WebhookRefusal::Unreadable(why) => ApiError::bad_request(
                    "validation-error",
                    format!("the {platform} webhook was refused: {why}"),
                ),
            }
        })?;
    metrics::counter!(
        "herald_webhook_deliveries_total",
        "platform" => platform.as_str(),
        "outcome" => "accepted"
    )
    .increment(1);
    match notice {
        WebhookNotice::AccessRemoved {
            account_id,
            why,
            at,
        } => {
            let connections: Vec<_> = herald
                .connection_queries
                .usable_on(&[platform.as_str()], None)
                .await?
                .into_iter()
                .filter(|c| c.account_id == account_id)
                .collect();
            for connection in &connections {
                record_access_removed(
                    &herald,
                    &connection.connection_id,
                    &why,
                    at,
                    platform,
                    &request_id,
                )
                .await?;
            }
            tracing::info!(%platform, connections = connections.len(), "access removed at the platform");
            Ok(
                HttpResponse::Ok()
                    .json(json!({"received": true, "connections": connections.len()})),
            )
        }
        WebhookNotice::LoginRemoved { login_id, why, at } => {
            let family: Vec<&str> = platform.login_family().iter().map(|p| p.as_str()).collect();
            let mut ended = 0;
            for connection in herald.connection_queries.usable_on(&family, None).await? {
                let Some(grant) = stored_grant(&herald, &connection).await? else {
                    continue;
                };
                if grant.login_id.as_deref() != Some(login_id.as_str()) {
                    continue;
                }
                record_access_removed(
                    &herald,
                    &connection.connection_id,
                    &why,
                    at,
                    platform,
                    &request_id,
                )
                .await?;
                ended += 1;
            }
            tracing::info!(%platform, connections = ended, "login removed at the platform");
            Ok(HttpResponse::Ok().json(json!({"received": true, "connections": ended})))
        }
        WebhookNotice::NotActedOn { event } => {
            tracing::info!(%platform, %event, "webhook event acknowledged; Herald follows this by polling");
            Ok(HttpResponse::Ok().json(json!({"received": true, "connections": 0})))
        }
    }
}

/// Records on one connection that the platform says access was removed.
async fn record_access_removed(
    herald: &Herald,
    connection_id: &str,
    why: &str,
    at: DateTime<Utc>,
    platform: Platform,
    request_id: &RequestId,
) -> Result<(), ApiError> {
    let recorded = herald
        .connections
        .execute(
            connection_id,
            ConnectionCommand::RecordAccessRemoved {
                why: why.to_owned(),
                at,
            },
            &CommandMetadata::actor(format!("{platform}-webhook")).correlated(request_id.0.clone()),
        )
        .await;
    match recorded {
        // Disconnected meanwhile: there is nothing left to end.
        Ok(()) | Err(AggregateError::UserError(_)) => Ok(()),
        Err(error) => Err(error.into()),
    }
}
