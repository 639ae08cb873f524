//! Publishing analytics, read from the analytics projection: a user's own figures, or any
//! user's for operators (`HERALD_OPERATOR_SUBJECTS`).
use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use herald_domain::{ConnectionId, Platform};
use herald_projections::analytics::{day_start, AnalyticsScope, Counts};
use serde::Deserialize;
use serde_json::json;

use crate::auth::AuthUser;
use crate::problem::ApiError;
use crate::routes::jobs::parse_time;
use crate::runtime::Herald;

/// The query parameters of every analytics endpoint; `bucket` only applies to the timeseries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsQuery {
    /// RFC 3339 with an offset, inclusive.
    from: Option<String>,
    /// RFC 3339 with an offset, exclusive.
    to: Option<String>,
    platform: Option<String>,
    connection_id: Option<String>,
    /// Operators only: one user's figures instead of everyone's.
    user_id: Option<String>,
    /// `hour` (default) or `day`.
    bucket: Option<String>,
}

/// The figures `query` asks for, checked, and limited to what `user` may see.
fn scope(
    herald: &Herald,
    user: &AuthUser,
    query: &AnalyticsQuery,
) -> Result<AnalyticsScope, ApiError> {
    let from = query
        .from
        .as_deref()
        .map(|raw| parse_time("from", raw))
        .transpose()?;
    let to = query
        .to
        .as_deref()
        .map(|raw| parse_time("to", raw))
        .transpose()?;
    if let (Some(from), Some(to)) = (from, to) {
        if from > to {
            return Err(ApiError::bad_request(
                "validation-error",
                "from must not be after to",
            ));
        }
    }
    let platform = query
        .platform
        .as_deref()
        .map(|raw| {
            raw.parse::<Platform>()
                .map(|p| p.as_str().to_string())
                .map_err(|e| ApiError::bad_request("validation-error", e.to_string()))
        })
        .transpose()?;
    let connection_id = query
        .connection_id
        .as_deref()
        .map(|raw| {
            ConnectionId::parse(raw)
                .map(|id| id.to_string())
                .map_err(|_| {
                    ApiError::bad_request(
                        "validation-error",
                        format!("connection_id '{raw}' is not a connection id"),
                    )
                })
        })
        .transpose()?;
    let own = user.0.as_str();
    let user_id = if herald.config.is_operator(own) {
        query.user_id.clone()
    } else {
        match query.user_id.as_deref() {
            Some(other) if other != own => {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "only operators may read another user's analytics",
                ))
            }
            _ => Some(own.to_string()),
        }
    };
    Ok(AnalyticsScope {
        user_id,
        platform,
        connection_id,
        from,
        to,
    })
}

/// `bucket` is the timeseries' own parameter; elsewhere it is a mistake worth saying.
fn refuse_bucket(query: &AnalyticsQuery) -> Result<(), ApiError> {
    match query.bucket {
        Some(_) => Err(ApiError::bad_request(
            "validation-error",
            "bucket applies only to /analytics/timeseries",
        )),
        None => Ok(()),
    }
}

/// Published jobs out of those that ended (published or failed); `None` before any ended.
fn success_rate(counts: &Counts) -> Option<f64> {
    let ended = counts.published + counts.failed;
    (ended > 0).then(|| counts.published as f64 / ended as f64)
}

/// `GET /api/v1/analytics/summary`.
pub async fn summary(
    herald: web::Data<Herald>,
    user: AuthUser,
    query: web::Query<AnalyticsQuery>,
) -> Result<HttpResponse, ApiError> {
    refuse_bucket(&query)?;
    let scope = scope(&herald, &user, &query)?;
    let mut totals = Counts::default();
    for (_, counts) in herald.analytics_queries.hours(&scope).await? {
        totals.add(&counts);
    }
    let latencies = herald.analytics_queries.latencies(&scope).await?;
    Ok(HttpResponse::Ok().json(json!({
        "from": scope.from,
        "to": scope.to,
        "user_id": scope.user_id,
        "success_rate": success_rate(&totals),
        "failed": totals.failed,
        "rate_limit_waits": totals.limit_waits,
        "counts": totals,
        "latency": latencies,
    })))
}

/// `GET /api/v1/analytics/timeseries`: the counters per hour or per UTC day (the sum of its
/// hours), only buckets with activity, oldest first.
pub async fn timeseries(
    herald: web::Data<Herald>,
    user: AuthUser,
    query: web::Query<AnalyticsQuery>,
) -> Result<HttpResponse, ApiError> {
    let bucket = query.bucket.as_deref().unwrap_or("hour");
    let bucket_of: fn(i64) -> i64 = match bucket {
        "hour" => |hour| hour,
        "day" => day_start,
        other => {
            return Err(ApiError::bad_request(
                "validation-error",
                format!("bucket '{other}' must be hour or day"),
            ))
        }
    };
    let scope = scope(&herald, &user, &query)?;
    let mut buckets: BTreeMap<i64, Counts> = BTreeMap::new();
    for (hour, counts) in herald.analytics_queries.hours(&scope).await? {
        buckets.entry(bucket_of(hour)).or_default().add(&counts);
    }
    let buckets: Vec<_> = buckets
        .into_iter()
        .map(|(start, counts)| {
            json!({
                "start": chrono::DateTime::from_timestamp_millis(start),
                "success_rate": success_rate(&counts),
                "counts": counts,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "bucket": bucket, "buckets": buckets })))
}

/// `GET /api/v1/analytics/errors`: failed attempts by error class and code, most frequent first.
pub async fn errors(
    herald: web::Data<Herald>,
    user: AuthUser,
    query: web::Query<AnalyticsQuery>,
) -> Result<HttpResponse, ApiError> {
    refuse_bucket(&query)?;
    let scope = scope(&herald, &user, &query)?;
    let errors = herald.analytics_queries.errors(&scope).await?;
    Ok(HttpResponse::Ok().json(json!({ "errors": errors })))
}
