//! The event store and the Kafka log agree (ARCHITECTURE invariant 2): a published job's events
//! are in the `events` table in sequence order and on `{prefix}herald.publishing_job` in the
//! same order, keyed by the job id.
mod support;

use std::time::Duration;

use serde_json::json;
use sqlx::Row;
use support::kafka::read_topic_until;
use support::{spawn_app, Backend};

const SOON: Duration = Duration::from_secs(60);
const LIFE: [&str; 3] = ["JobScheduled", "AttemptStarted", "Published"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_events_are_in_the_store_and_on_kafka_in_the_same_order() {
    let app = spawn_app(Backend::PostgresKafka).await;
    let connection = app.connect_x("alice", "alice_x").await;
    let job_id = app
        .publish("alice", &connection, json!({"text": "on the record"}))
        .await;
    app.wait_for_status("alice", &job_id, "published", SOON)
        .await;

    let stored: Vec<(i64, String)> = sqlx::query(
        "SELECT sequence, event_type FROM events
         WHERE aggregate_type = 'PublishingJob' AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(&job_id)
    .fetch_all(&app.herald().db.any)
    .await
    .unwrap()
    .iter()
    .map(|row| (row.get("sequence"), row.get("event_type")))
    .collect();
    assert_eq!(
        stored,
        LIFE.iter()
            .enumerate()
            .map(|(i, t)| (i as i64 + 1, t.to_string()))
            .collect::<Vec<_>>(),
        "the store"
    );

    let brokers = app.config.kafka_brokers.clone().unwrap();
    let topic = format!("{}herald.publishing_job", app.config.kafka_topic_prefix);
    let messages = read_topic_until(&brokers, &topic, SOON, |messages| {
        messages
            .iter()
            .filter(|m| m.key_str() == job_id && m.json()["event_type"] == "Published")
            .count()
            > 0
    })
    .await;
    let of_job: Vec<_> = messages.iter().filter(|m| m.key_str() == job_id).collect();
    assert_eq!(
        of_job.len(),
        messages.len(),
        "only this test's job is on this test's topic"
    );
    let partition = of_job[0].partition;
    assert!(
        of_job.iter().all(|m| m.partition == partition),
        "one key, one partition: {:?}",
        of_job
            .iter()
            .map(|m| (m.partition, m.offset))
            .collect::<Vec<_>>()
    );
    // `read_topic` returns each partition in offset order.
    let on_kafka: Vec<(i64, String)> = of_job
        .iter()
        .map(|m| {
            let record = m.json();
            assert_eq!(record["aggregate_id"], job_id.as_str(), "{record}");
            assert_eq!(record["aggregate_type"], "PublishingJob", "{record}");
            (
                record["sequence"].as_i64().unwrap(),
                record["event_type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(on_kafka, stored, "Kafka holds the store's events, in order");

    // The connection's events went to their own topic, keyed by the connection id.
    let topic = format!("{}herald.connection", app.config.kafka_topic_prefix);
    let connection_messages =
        read_topic_until(&brokers, &topic, SOON, |messages| !messages.is_empty()).await;
    assert!(connection_messages
        .iter()
        .all(|m| m.key_str() == connection && m.json()["aggregate_id"] == connection.as_str()));
    assert_eq!(connection_messages[0].json()["sequence"], 1);
    app.stop().await;
}
