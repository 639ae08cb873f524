//! Read models are rebuildable: `herald replay` empties them and re-applies every event, and the
//! result is what the live projections had built.
mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::Twin;
use support::{spawn_app, Backend, TestApp};

async fn snapshot(app: &TestApp) -> (Value, Value) {
    let jobs: Value = app.get("alice", "/jobs").await.json().await.unwrap();
    let connections: Value = app.get("alice", "/connections").await.json().await.unwrap();
    (jobs, connections)
}

async fn replay_rebuilds_the_same_read_models(backend: Backend) {
    let app = spawn_app(backend).await;
    let connection = app.connect_x("alice", "alice_x").await;
    let published = app
        .publish("alice", &connection, json!({"text": "kept"}))
        .await;
    app.wait_for_status("alice", &published, "published", Duration::from_secs(15))
        .await;
    app.fault(
        Twin::X,
        "create_tweet",
        json!({"kind": "content_rejected", "detail": "not allowed"}),
        1,
    )
    .await;
    let failed = app
        .publish("alice", &connection, json!({"text": "refused"}))
        .await;
    app.wait_for_status("alice", &failed, "failed", Duration::from_secs(15))
        .await;
    let before = snapshot(&app).await;

    let counts = herald_api::replay::replay(app.herald()).await.unwrap();
    let applied: u64 = counts
        .iter()
        .filter(|(name, _)| name == "jobs")
        .map(|(_, n)| *n)
        .sum();
    let stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE aggregate_type = 'PublishingJob'")
            .fetch_one(&app.herald().db.any)
            .await
            .unwrap();
    assert_eq!(applied as i64, stored, "every job event re-applied once");
    assert_eq!(snapshot(&app).await, before);
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
