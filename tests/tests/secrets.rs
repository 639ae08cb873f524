//! Secrets never leave the vault (ARCHITECTURE invariant 5): after a connect, a publish and a
//! token refresh, no access or refresh token the platform issued appears in the database, on the
//! Kafka topics, in a worker's debug log or in an API response — and the vault holds them only
//! encrypted.
mod support;

use std::time::Duration;

use serde_json::json;
use sqlx::Row;
use support::db::{dump_postgres, hex};
use support::kafka::{read_topic_until, KafkaMessage};
use support::worker::SplitApp;
use support::Backend;
use support::Twin;

const SOON: Duration = Duration::from_secs(120);

/// Where `secret` (or its hex form, as Postgres prints bytea) occurs in `haystack`.
fn leaks(haystack: &str, secret: &str) -> bool {
    haystack.contains(secret) || haystack.contains(&hex(secret.as_bytes()))
}

fn has_event(messages: &[KafkaMessage], event_type: &str) -> bool {
    messages
        .iter()
        .any(|m| m.json()["event_type"] == event_type)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_in_the_database_the_log_topics_worker_logs_or_api_responses() {
    let mut split = SplitApp::start(Backend::PostgresKafka).await;
    let config = split.worker_config();
    let worker = split.spawn_worker(&config, "debug");
    let app = &split.app;

    let connection = app.connect_x("alice", "alice_x").await;
    // The first post meets a dead access token: the worker refreshes it once.
    app.fault(Twin::X, "create_tweet", json!({"kind": "expire_token"}), 1)
        .await;
    let job_id = app
        .publish("alice", &connection, json!({"text": "secrets stay secret"}))
        .await;
    app.wait_for_status("alice", &job_id, "published", SOON)
        .await;
    worker.assert_running();

    let issued = app.sandbox.x_state().tokens_issued;
    assert_eq!(issued.len(), 2, "the connect and one refresh: {issued:?}");
    let mut secrets: Vec<String> = Vec::new();
    for pair in &issued {
        secrets.push(pair.access_token.clone());
        secrets.push(
            pair.refresh_token
                .clone()
                .expect("offline.access gives a refresh token"),
        );
    }
    assert!(secrets.iter().all(|s| s.len() >= 16), "{secrets:?}");

    // Kafka: wait until the refresh and the publication reached the topics, then read them all.
    let brokers = app.config.kafka_brokers.clone().unwrap();
    let prefix = &app.config.kafka_topic_prefix;
    let connection_topic = format!("{prefix}herald.connection");
    let job_topic = format!("{prefix}herald.publishing_job");
    let on_connection_topic = read_topic_until(&brokers, &connection_topic, SOON, |m| {
        has_event(m, "TokenRefreshed")
    })
    .await;
    let on_job_topic =
        read_topic_until(&brokers, &job_topic, SOON, |m| has_event(m, "Published")).await;
    for message in on_connection_topic.iter().chain(&on_job_topic) {
        let value = String::from_utf8_lossy(&message.value);
        let key = message.key_str();
        for secret in &secrets {
            assert!(
                !leaks(&value, secret) && !leaks(&key, secret),
                "a token is in Kafka message {}/{}@{}: {value}",
                message.topic,
                message.partition,
                message.offset
            );
        }
    }

    // The database: every row of every table.
    let database_url = app.config.database_url.clone().unwrap();
    let rows = dump_postgres(&database_url).await;
    let tables: std::collections::BTreeSet<&str> = rows.iter().map(|(t, _)| t.as_str()).collect();
    for expected in [
        "events",
        "outbox",
        "token_vault",
        "connection_views",
        "job_views",
    ] {
        assert!(
            tables.contains(expected),
            "no rows in {expected}: {tables:?}"
        );
    }
    for (table, row) in &rows {
        for secret in &secrets {
            assert!(!leaks(row, secret), "a token is in table {table}: {row}");
        }
    }

    // The vault holds the current tokens, encrypted.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&database_url)
        .await
        .unwrap();
    let vault_rows = sqlx::query("SELECT connection_id, ciphertext FROM token_vault")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(vault_rows.len(), 1);
    assert_eq!(vault_rows[0].get::<String, _>("connection_id"), connection);
    let ciphertext: Vec<u8> = vault_rows[0].get("ciphertext");
    assert!(!ciphertext.is_empty());
    for secret in &secrets {
        assert!(
            !ciphertext
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()),
            "the vault ciphertext contains a token in clear"
        );
    }
    pool.close().await;

    // The API's answers.
    let mut responses = Vec::new();
    for path in [
        "/connections".to_string(),
        "/jobs".to_string(),
        format!("/jobs/{job_id}"),
        format!("/jobs/{job_id}/history"),
    ] {
        let response = app.get("alice", &path).await;
        assert_eq!(response.status(), 200, "{path}");
        responses.push((path, response.text().await.unwrap()));
    }
    for (path, body) in &responses {
        for secret in &secrets {
            assert!(
                !body.contains(secret.as_str()),
                "a token is in GET {path}: {body}"
            );
        }
    }

    // The worker's own log, at debug level: it refreshed the token and published.
    drop(worker);
    let log = std::fs::read_to_string(split.log_dir.join("worker-1.log")).unwrap();
    assert!(
        log.contains("DEBUG"),
        "the worker logged at debug level: {log}"
    );
    assert!(
        log.contains(&job_id),
        "the worker's log covers the job {job_id}"
    );
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "a token is in the worker's log ({})",
            split.log_dir.display()
        );
    }
    split.stop().await;
}
