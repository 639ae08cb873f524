//! Prometheus metrics at `GET /metrics`, through the `metrics` facade: HTTP requests by route
//! and status, platform calls, publish attempts and their failures by class, posts created,
//! token refreshes, scheduler delay, webhook deliveries; and, read when scraped, jobs by status
//! and the relay's lag. Labels are drawn from fixed sets (routes as declared, platforms, error
//! classes): no user, account, job id or content ever becomes a label.
use std::sync::OnceLock;

use actix_web::{web, HttpResponse};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::runtime::Herald;

/// Every metric family Herald exports, with what it counts; alert rules and dashboards name only
/// these (a test checks both ways).
pub const METRICS: &[(&str, &str)] = &[
    ("herald_http_requests_total", "API requests answered, by method, route pattern and status"),
    ("herald_http_request_duration_seconds", "API request latency, by method and route pattern"),
    ("herald_platform_calls_total", "Calls to platforms, by platform and outcome (ok, rate_limited, client_error, server_error, transport_error)"),
    ("herald_platform_call_duration_seconds", "Platform call latency until the answer's headers, by platform"),
    ("herald_publish_attempts_total", "Publish attempts started, by platform"),
    ("herald_publish_attempt_failures_total", "Publish attempts that failed, by platform and error class (rate_limited: waits for a limit)"),
    ("herald_posts_created_total", "Posts (thread parts included) created on platforms, by platform"),
    ("herald_scheduler_delay_seconds", "How late attempts start after their job was due"),
    ("herald_token_refreshes_total", "Token refreshes, by outcome (ok, failed, reauthorization_required)"),
    ("herald_webhook_deliveries_total", "Platform webhook deliveries received, by platform and outcome (accepted, refused)"),
    ("herald_outbound_webhooks_total", "Attempts at sending webhooks to users' subscriptions, by outcome (delivered, failed: retried later, gave_up: the subscription was disabled)"),
    ("herald_jobs", "Jobs by status, read from the jobs read model when scraped"),
    ("herald_relay_lag_events", "Committed events not yet relayed to Kafka, read when scraped"),
    ("herald_consumer_lag_records", "Records on the event log a consumer has not handled yet, by consumer (each worker process reports the partitions it holds: sum them), measured every few seconds"),
];

/// Seconds: from a millisecond to a few minutes (uploads, scheduler delays).
const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// The process's recorder, installed once (tests run several Heralds in one process).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!(
                "a metrics recorder was already installed; /metrics shows only this one's"
            );
        }
        for (name, help) in METRICS {
            metrics::describe_counter!(*name, *help);
        }
        handle
    })
}

/// Records one answered request. `route` is the pattern the request matched (bounded), not its
/// path.
pub fn record_request(method: &str, route: &str, status: u16, seconds: f64) {
    let status = status.to_string();
    metrics::counter!(
        "herald_http_requests_total",
        "method" => method.to_owned(),
        "route" => route.to_owned(),
        "status" => status
    )
    .increment(1);
    metrics::histogram!(
        "herald_http_request_duration_seconds",
        "method" => method.to_owned(),
        "route" => route.to_owned()
    )
    .record(seconds);
}

/// `GET /metrics`: the Prometheus text exposition.
pub async fn scrape(herald: web::Data<Herald>) -> HttpResponse {
    // Gauges that are facts of the database, read now rather than kept up to date.
    match sqlx::query_as::<_, (String, i64)>(
        "SELECT status, count(*) FROM job_views GROUP BY status",
    )
    .fetch_all(&herald.db.any)
    .await
    {
        Ok(rows) => {
            for (status, count) in rows {
                metrics::gauge!("herald_jobs", "status" => status).set(count as f64);
            }
        }
        Err(error) => tracing::warn!(%error, "could not count jobs by status for /metrics"),
    }
    if let Ok(Some(lag)) = herald.log.relay_lag(&herald.db).await {
        metrics::gauge!("herald_relay_lag_events").set(lag as f64);
    }
    let handle = handle();
    handle.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(handle.render())
}
