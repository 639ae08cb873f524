//! Read models are rebuildable: `herald replay` empties them and re-applies every event, and the
//! result is what the live projections had built — row for row, positions included.
mod support;

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::{AnyPool, Row};
use support::Twin;
use support::{spawn_app, Backend, TestApp};

const SOON: Duration = Duration::from_secs(15);

/// Every read-model table a replay rebuilds, with the columns a projection writes (leases
/// belong to the workers), in a fixed order.
const READ_MODELS: &[(&str, &str, &str)] = &[
    (
        "job_views",
        "job_id, user_id, connection_id, platform, status, text_preview, part_count, media_count, publish_at_ms, attempts, max_attempts, uploads, post_id, post_url, post_ids, last_error_class, last_error_code, last_error_message, retry_at_ms, created_at_ms, updated_at_ms, published_at_ms, limit_waits",
        "job_id",
    ),
    // Ranks are compared apart: see `ranks`.
    ("job_schedule", "job_id, due_at_ms, user_id", "job_id"),
    ("schedule_user_load", "user_id, pending", "user_id"),
    (
        "connection_views",
        "connection_id, user_id, platform, account_id, username, display_name, status, status_reason, scopes, token_expires_at_ms, can_refresh, connected_at_ms, updated_at_ms, login_expires_at_ms",
        "connection_id",
    ),
    (
        "analytics_jobs",
        "job_id, user_id, connection_id, platform, accepted_at_ms, due_at_ms, upload_bytes, published_at_ms, accepted_to_published_ms, due_to_published_ms",
        "job_id",
    ),
    (
        "analytics_hourly",
        "user_id, connection_id, platform, hour_ms, accepted, published, failed, cancelled, attempts, retries, limit_waits, bytes_uploaded",
        "user_id, connection_id, hour_ms",
    ),
    (
        "analytics_errors",
        "user_id, connection_id, platform, hour_ms, error_class, error_code, failures, latest_at_ms, latest_job_id, latest_message",
        "user_id, connection_id, hour_ms, error_class, error_code",
    ),
    (
        "consumer_stream_positions",
        "consumer, stream_id, last_sequence",
        "consumer, stream_id",
    ),
];

/// The read-model tables as text, row by row.
async fn read_models(pool: &AnyPool) -> Vec<(String, Vec<Vec<Option<String>>>)> {
    let mut tables = Vec::new();
    for (table, columns, order) in READ_MODELS {
        let names: Vec<&str> = columns.split(", ").collect();
        let select = names
            .iter()
            .map(|c| format!("CAST({c} AS TEXT) AS {c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(&format!("SELECT {select} FROM {table} ORDER BY {order}"))
            .fetch_all(pool)
            .await
            .unwrap();
        let rows = rows
            .iter()
            .map(|row| {
                names
                    .iter()
                    .map(|c| row.try_get::<Option<String>, _>(*c).unwrap())
                    .collect()
            })
            .collect();
        tables.push((table.to_string(), rows));
    }
    tables
}

/// Each user's ranks in the schedule. A replay ranks a user's waiting jobs in stream order, not
/// in the order the live projection happened to see them (which depends on how partitions
/// interleave), so it is the ranks each user holds that must come back, not which job has which.
async fn ranks(pool: &AnyPool) -> Vec<(String, i64)> {
    sqlx::query("SELECT user_id, user_rank FROM job_schedule ORDER BY user_id, user_rank")
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get("user_id"), row.get("user_rank")))
        .collect()
}

async fn schedule(
    app: &TestApp,
    user: &str,
    connection: &str,
    text: &str,
    in_hours: i64,
) -> String {
    let at = (chrono::Utc::now() + chrono::Duration::hours(in_hours)).to_rfc3339();
    let response: Value = app
        .post(
            user,
            "/schedule",
            json!({"connection_ids": [connection], "content": {"text": text}, "publish_at": at}),
        )
        .await
        .json()
        .await
        .unwrap();
    response["jobs"][0]["job_id"].as_str().unwrap().to_string()
}

/// Jobs in every state for two users: published, failed, failed then retried and published,
/// cancelled, and waiting for their time (each waiting one ranked in its user's backlog).
async fn history_of_every_kind(app: &TestApp) {
    let alice = app.connect_x("alice", "alice_x").await;
    let bob = app.connect_x("bob", "bob_x").await;
    let published = app.publish("alice", &alice, json!({"text": "kept"})).await;
    app.wait_for_status("alice", &published, "published", SOON)
        .await;
    app.fault(
        Twin::X,
        "create_tweet",
        json!({"kind": "content_rejected", "detail": "not allowed"}),
        2,
    )
    .await;
    let failed = app
        .publish("alice", &alice, json!({"text": "refused"}))
        .await;
    app.wait_for_status("alice", &failed, "failed", SOON).await;
    let retried = app.publish("bob", &bob, json!({"text": "again"})).await;
    app.wait_for_status("bob", &retried, "failed", SOON).await;
    let response = app
        .post("bob", &format!("/jobs/{retried}/retry"), json!({}))
        .await;
    assert_eq!(response.status(), 202);
    app.wait_for_status("bob", &retried, "published", SOON)
        .await;
    for hours in 1..=3 {
        schedule(app, "alice", &alice, &format!("later {hours}"), hours).await;
    }
    schedule(app, "bob", &bob, "bob later", 2).await;
    let cancelled = schedule(app, "alice", &alice, "never", 5).await;
    assert_eq!(
        app.delete("alice", &format!("/jobs/{cancelled}"))
            .await
            .status(),
        200
    );
    app.wait_for_status("alice", &cancelled, "cancelled", SOON)
        .await;
}

/// Waits until the live projections have applied every stored event.
async fn caught_up(app: &TestApp) {
    let pool = app.herald().db.any.clone();
    support::eventually("projections caught up", SOON, || {
        let pool = pool.clone();
        async move {
            let stored: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM events e WHERE NOT EXISTS (
                     SELECT 1 FROM consumer_stream_positions p
                     WHERE p.consumer IN ('jobs', 'scheduler', 'analytics', 'connections') AND p.stream_id = e.aggregate_id
                       AND p.last_sequence >= e.sequence)",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            (stored == 0).then_some(())
        }
    })
    .await;
}

async fn replay_rebuilds_the_same_read_models(backend: Backend) {
    let app = spawn_app(backend).await;
    history_of_every_kind(&app).await;
    caught_up(&app).await;
    let before = read_models(&app.herald().db.any).await;
    let ranks_before = ranks(&app.herald().db.any).await;
    assert!(
        before.iter().all(|(_, rows)| !rows.is_empty()),
        "every read model has rows to rebuild: {before:?}"
    );

    // Pages of 3 split streams between transactions, the case a long history always has.
    for page in [3, herald_api::replay::PAGE] {
        let report = herald_api::replay::replay_in_pages(app.herald(), page)
            .await
            .unwrap();
        let stored: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM events WHERE aggregate_type = 'PublishingJob'",
        )
        .fetch_one(&app.herald().db.any)
        .await
        .unwrap();
        for (name, applied) in &report.applied {
            if ["jobs", "scheduler", "analytics"].contains(&name.as_str()) {
                assert_eq!(
                    *applied as i64, stored,
                    "{name}: every job event applied once"
                );
            }
        }
        assert_eq!(
            read_models(&app.herald().db.any).await,
            before,
            "pages of {page}"
        );
        assert_eq!(ranks(&app.herald().db.any).await, ranks_before);
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_on_the_embedded_default() {
    replay_rebuilds_the_same_read_models(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_on_postgres() {
    replay_rebuilds_the_same_read_models(Backend::PostgresKafka).await;
}
