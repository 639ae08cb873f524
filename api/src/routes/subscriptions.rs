//! Outbound webhook subscriptions: `/api/v1/webhooks/subscriptions`. A user names a URL of
//! their own system and the event types it wants; Herald answers with a signing secret, once,
//! and from then on posts those events there, signed in the Standard Webhooks format (see
//! `herald_infrastructure::webhooks`). The owner sees every delivery and attempt, can send one
//! again, send again everything since a time, and enable a subscription Herald disabled.
use std::collections::BTreeSet;

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use herald_domain::webhook::WebhookEventType;
use herald_infrastructure::webhooks::subscriptions::DeliveryFilter;
use herald_infrastructure::webhooks::{url_refusal, Subscription};
use serde::Deserialize;
use serde_json::json;

use crate::auth::AuthUser;
use crate::problem::ApiError;
use crate::runtime::Herald;

/// Longest target URL taken.
const MAX_URL_LEN: usize = 2048;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeRequest {
    /// Where to post: an absolute http(s) URL of a public host.
    url: String,
    /// Which events, by name (`job.published`, ...); at least one.
    event_types: Vec<String>,
}

/// The target URL, parsed and checked for shape; the address policy is checked after.
fn target_url(raw: &str) -> Result<url::Url, ApiError> {
    let invalid = |why: &str| ApiError::bad_request("validation-error", format!("url: {why}"));
    if raw.len() > MAX_URL_LEN {
        return Err(invalid(&format!("at most {MAX_URL_LEN} characters")));
    }
    let url = url::Url::parse(raw.trim()).map_err(|e| invalid(&format!("not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid("must be an absolute http(s) URL"));
    }
    // Credentials in a URL would be shown back in every listing; a fragment is never sent.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "must not carry a user or password; verify Herald by the signature instead",
        ));
    }
    if url.fragment().is_some() {
        return Err(invalid("must not have a #fragment"));
    }
    Ok(url)
}

fn event_types(names: &[String]) -> Result<BTreeSet<WebhookEventType>, ApiError> {
    if names.is_empty() {
        return Err(ApiError::bad_request(
            "validation-error",
            format!(
                "event_types: name at least one of {}",
                WebhookEventType::ALL
                    .map(WebhookEventType::as_str)
                    .join(", ")
            ),
        ));
    }
    names
        .iter()
        .map(|name| {
            name.parse()
                .map_err(|e| ApiError::bad_request("validation-error", format!("event_types: {e}")))
        })
        .collect()
}

/// `POST /webhooks/subscriptions`: 201 with the subscription and its secret, shown this once.
pub async fn create(
    herald: web::Data<Herald>,
    user: AuthUser,
    body: web::Json<SubscribeRequest>,
) -> Result<HttpResponse, ApiError> {
    let url = target_url(&body.url)?;
    let types = event_types(&body.event_types)?;
    herald
        .webhook_policy
        .check(url.as_str())
        .await
        .map_err(|refusal| ApiError::unprocessable("webhook-url-refused", url_refusal(&refusal)))?;
    let limit = i64::from(herald.config.max_webhook_subscriptions_per_user);
    if limit > 0 {
        let current = herald.webhooks.count(&user.0).await?;
        if current >= limit {
            return Err(ApiError::limit_reached(
                format!("you have {current} webhook subscriptions, the most one user may have: delete one first"),
                "HERALD_MAX_WEBHOOK_SUBSCRIPTIONS_PER_USER",
            ));
        }
    }
    let created = herald
        .webhooks
        .create(&user.0, url.as_str(), &types)
        .await?;
    let mut answer = json!(created.subscription);
    answer["secret"] = json!(created.secret.expose());
    Ok(HttpResponse::Created()
        .insert_header((
            "Location",
            format!(
                "/api/v1/webhooks/subscriptions/{}",
                created.subscription.subscription_id
            ),
        ))
        .json(answer))
}

/// `GET /webhooks/subscriptions`.
pub async fn list(herald: web::Data<Herald>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    let subscriptions = herald.webhooks.list(&user.0).await?;
    Ok(HttpResponse::Ok().json(json!({ "subscriptions": subscriptions })))
}

async fn owned(herald: &Herald, user: &AuthUser, id: &str) -> Result<Subscription, ApiError> {
    herald
        .webhooks
        .get(&user.0, id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook subscription"))
}

/// `GET /webhooks/subscriptions/{id}`.
pub async fn get(
    herald: web::Data<Herald>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let subscription = owned(&herald, &user, &path).await?;
    Ok(HttpResponse::Ok().json(&subscription))
}

/// `DELETE /webhooks/subscriptions/{id}`: the subscription and its deliveries are gone.
pub async fn delete(
    herald: web::Data<Herald>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if !herald.webhooks.delete(&user.0, &path).await? {
        return Err(ApiError::not_found("webhook subscription"));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /webhooks/subscriptions/{id}/enable`: sends again what waited while it was disabled.
pub async fn enable(
    herald: web::Data<Herald>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let subscription = herald
        .webhooks
        .enable(&user.0, &path)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook subscription"))?;
    herald.webhook_wake.notify_one();
    Ok(HttpResponse::Ok().json(&subscription))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    status: Option<String>,
    limit: Option<i64>,
}

const DELIVERY_STATUSES: [&str; 3] = ["pending", "delivered", "failed"];

/// `GET /webhooks/subscriptions/{id}/deliveries?status=&limit=`: newest first, with every
/// attempt (status code, latency, error, next retry).
pub async fn deliveries(
    herald: web::Data<Herald>,
    user: AuthUser,
    path: web::Path<String>,
    query: web::Query<DeliveriesQuery>,
) -> Result<HttpResponse, ApiError> {
    if let Some(status) = query
        .status
        .as_deref()
        .filter(|s| !DELIVERY_STATUSES.contains(s))
    {
        return Err(ApiError::bad_request(
            "validation-error",
            format!(
                "unknown status '{status}'; one of {}",
                DELIVERY_STATUSES.join(", ")
            ),
        ));
    }
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_request(
            "validation-error",
            "limit must be 1-200",
        ));
    }
    let filter = DeliveryFilter {
        status: query.status.clone(),
        limit,
    };
    let deliveries = herald
        .webhooks
        .deliveries(&user.0, &path, &filter)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook subscription"))?;
    Ok(HttpResponse::Ok().json(json!({ "deliveries": deliveries })))
}

/// `POST /webhooks/subscriptions/{id}/deliveries/{delivery_id}/redeliver`: 202, sent again
/// with the same `webhook-id` and body.
pub async fn redeliver(
    herald: web::Data<Herald>,
    user: AuthUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (subscription_id, delivery_id) = path.into_inner();
    if !herald
        .webhooks
        .redeliver(&user.0, &subscription_id, &delivery_id)
        .await?
    {
        return Err(ApiError::not_found("webhook delivery"));
    }
    herald.webhook_wake.notify_one();
    Ok(HttpResponse::Accepted().json(json!({ "delivery_id": delivery_id, "status": "pending" })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayQuery {
    /// RFC 3339 with an offset.
    since: String,
}

/// `POST /webhooks/subscriptions/{id}/replay?since=`: 202, every delivery of events since then
/// sent again (same ids, so receivers that kept them drop the copies).
pub async fn replay(
    herald: web::Data<Herald>,
    user: AuthUser,
    path: web::Path<String>,
    query: web::Query<ReplayQuery>,
) -> Result<HttpResponse, ApiError> {
    let since = DateTime::parse_from_rfc3339(&query.since)
        .map_err(|_| {
            ApiError::bad_request(
                "validation-error",
                format!(
                    "since '{}' must be RFC 3339 with an offset, e.g. 2026-12-01T09:00:00Z",
                    query.since
                ),
            )
        })?
        .with_timezone(&Utc);
    if since > Utc::now() {
        return Err(ApiError::bad_request(
            "validation-error",
            "since is in the future: nothing happened since then yet",
        ));
    }
    let replayed = herald
        .webhooks
        .replay(&user.0, &path, since)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook subscription"))?;
    herald.webhook_wake.notify_one();
    Ok(HttpResponse::Accepted().json(json!({ "replayed": replayed, "since": since })))
}
