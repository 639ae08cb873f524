//! Events are versioned and old versions are upcast on read (ARCHITECTURE invariant 10). A
//! `Published` written as a release before version 2 wrote it — raw version 1 JSON in the event
//! store, and so in the outbox and on the log — is read as version 2 by the event store (the
//! aggregate's decisions and the history), by the log consumers feeding the projections, and by
//! `herald replay`, which rebuilds the same read models.
mod support;

use std::time::Duration;

use herald_domain::publishing_job::JobStatus;
use serde_json::{json, Value};
use support::kafka::read_topic_until;
use support::worker::{config_env, herald_binary};
use support::{event_data, spawn_app, Backend, TestApp};

const SOON: Duration = Duration::from_secs(30);
const POST_ID: &str = "1001";
const POST_URL: &str = "https://x.com/alice_x/status/1001";

async fn a_version_1_published_is_read_as_version_2_everywhere(backend: Backend) {
    let app = spawn_app(backend).await;
    let connection = app.connect_x("alice", "alice_x").await;
    // Due next year: no worker touches it, so its events after JobScheduled are the ones below.
    let response = app
        .post(
            "alice",
            "/schedule",
            json!({
                "connection_ids": [connection],
                "content": {"text": "written by an older release"},
                "publish_at": (chrono::Utc::now() + chrono::Duration::days(365)).to_rfc3339(),
            }),
        )
        .await;
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
    let job_id = response.json::<Value>().await.unwrap()["jobs"][0]["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_for_status("alice", &job_id, "scheduled", SOON)
        .await;

    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let attempt_id = uuid::Uuid::new_v4().to_string();
    insert_event(
        &app,
        &job_id,
        2,
        "AttemptStarted",
        json!({"AttemptStarted": {"attempt_id": attempt_id, "attempt_number": 1, "at": at}}),
    )
    .await;
    // Version 1's shape: the post id twice, the first post's URL as `url`.
    insert_event(
        &app,
        &job_id,
        3,
        "Published",
        json!({"Published": {
            "attempt_id": attempt_id,
            "post_id": POST_ID,
            "url": POST_URL,
            "post_ids": [POST_ID],
            "at": at,
        }}),
    )
    .await;

    // (a) The event store: the aggregate decides on the published state...
    let job = app.herald().jobs.load(&job_id).await.unwrap();
    assert_eq!(job.status, JobStatus::Published);
    assert_eq!(job.published_post_id.as_deref(), Some(POST_ID));
    assert_eq!(job.posted_parts, [POST_ID]);
    assert_eq!(job.first_post_url.as_deref(), Some(POST_URL));
    let cancel = app.delete("alice", &format!("/jobs/{job_id}")).await;
    assert_eq!(cancel.status(), 409, "{:?}", cancel.text().await);
    // ...and the history shows the event in its version 2 shape.
    let history = app.history_events("alice", &job_id).await;
    let published = history.last().unwrap();
    assert_eq!(published["event_type"], "Published", "{published}");
    assert_eq!(published["event_version"], "2.0", "{published}");
    assert_eq!(
        event_data(published),
        &json!({
            "attempt_id": attempt_id,
            "post_ids": [POST_ID],
            "first_post_url": POST_URL,
            "at": at,
        })
    );

    // (b) The log carries version 1, and the consumers feed it to the projections as version 2.
    assert_on_the_log_as_version_1(&app, backend, &job_id).await;
    let view = app
        .wait_for_status("alice", &job_id, "published", SOON)
        .await;
    assert_eq!(view["post_id"], POST_ID, "{view}");
    assert_eq!(view["post_url"], POST_URL, "{view}");
    assert_eq!(view["post_ids"], json!([POST_ID]), "{view}");
    assert_eq!(view["attempts"], 1, "{view}");
    let parked: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM parked_messages")
        .fetch_one(&app.herald().db.any)
        .await
        .unwrap();
    assert_eq!(parked, 0, "no consumer gave up on an event");
    let live = read_models(&app, &job_id).await;

    // (c) `herald replay`, the command an operator runs, rebuilds the same read models.
    let replay = tokio::process::Command::new(herald_binary())
        .arg("replay")
        .env_clear()
        .envs(config_env(&app.config))
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run herald replay");
    let stdout = String::from_utf8_lossy(&replay.stdout);
    assert!(
        replay.status.success(),
        "herald replay failed: {stdout}{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE aggregate_type = 'PublishingJob'")
            .fetch_one(&app.herald().db.any)
            .await
            .unwrap();
    assert!(
        stdout.contains(&format!("jobs: {stored} events applied")),
        "every job event re-applied once: {stdout}"
    );
    assert_eq!(read_models(&app, &job_id).await, live);
    app.stop().await;
}

/// Appends a version 1.0 event as an older release stored it; the outbox trigger puts it on the
/// log in the same transaction, as for any committed event.
async fn insert_event(
    app: &TestApp,
    job_id: &str,
    sequence: i64,
    event_type: &str,
    payload: Value,
) {
    let db = &app.herald().db;
    let sql = if db.is_postgres() {
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('PublishingJob', $1, $2, $3, '1.0', $4::json, '{}'::json)"
    } else {
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('PublishingJob', $1, $2, $3, '1.0', $4, '{}')"
    };
    sqlx::query(sql)
        .bind(job_id)
        .bind(sequence)
        .bind(event_type)
        .bind(payload.to_string())
        .execute(&db.any)
        .await
        .unwrap();
    // Wakes the local log's consumers as a command's commit does (the trigger wakes Kafka's relay).
    app.herald().log.notify_committed();
}

/// The `Published` record on the log as stored: version 1.0 with its version 1 payload.
async fn assert_on_the_log_as_version_1(app: &TestApp, backend: Backend, job_id: &str) {
    let (version, payload) = match backend {
        Backend::Embedded => {
            // The local log is the outbox.
            let (version, payload): (String, String) = sqlx::query_as(
                "SELECT event_version, payload FROM outbox
                 WHERE aggregate_id = $1 AND event_type = 'Published'",
            )
            .bind(job_id)
            .fetch_one(&app.herald().db.any)
            .await
            .unwrap();
            (version, serde_json::from_str::<Value>(&payload).unwrap())
        }
        Backend::PostgresKafka => {
            let brokers = app.config.kafka_brokers.clone().unwrap();
            let topic = format!("{}herald.publishing_job", app.config.kafka_topic_prefix);
            let is_published = |m: &support::kafka::KafkaMessage| {
                m.key_str() == job_id && m.json()["event_type"] == "Published"
            };
            let messages = read_topic_until(&brokers, &topic, SOON, |messages| {
                messages.iter().any(is_published)
            })
            .await;
            let record = messages.iter().find(|m| is_published(m)).unwrap().json();
            (
                record["event_version"].as_str().unwrap().to_string(),
                record["payload"].clone(),
            )
        }
    };
    assert_eq!(version, "1.0");
    assert_eq!(payload["Published"]["post_id"], POST_ID, "{payload}");
    assert_eq!(payload["Published"]["url"], POST_URL, "{payload}");
}

/// What the query API serves from the read models: the job, the user's jobs, the connections.
async fn read_models(app: &TestApp, job_id: &str) -> (Value, Value, Value) {
    let get = |path: String| async move {
        let response = app.get("alice", &path).await;
        assert_eq!(response.status(), 200, "{path}");
        response.json::<Value>().await.unwrap()
    };
    (
        get(format!("/jobs/{job_id}")).await,
        get("/jobs".to_string()).await,
        get("/connections".to_string()).await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upcast_on_the_embedded_default() {
    a_version_1_published_is_read_as_version_2_everywhere(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upcast_on_postgres_and_kafka() {
    a_version_1_published_is_read_as_version_2_everywhere(Backend::PostgresKafka).await;
}
