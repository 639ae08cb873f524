//! The Postgres outbox → relay → Kafka → consumer path against a real broker (tansu) and a real
//! Postgres. Run `eval "$(bash scripts/test-services.sh)"` first; without it these tests fail.
//! Each test has its own database, topic prefix and consumer groups.
#[path = "log_support.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_infrastructure::db::{create_scratch_database, Db, Engine};
use herald_infrastructure::log::{
    ensure_topics, EventLog, KafkaConfig, KafkaConsumerRunner, LocalConsumerRunner, LocalLog,
    LogHandler, LogRecord, OutboxRelay, RelayOptions,
};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use sqlx::postgres::PgPool;
use sqlx::{Connection, Executor, PgConnection};
use support::{fast_retry, pairs, parked_rows, payload, unique, wait_until, RecordingHandler, JOB};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Generous: joining a consumer group takes a few seconds on tansu.
const WAIT: Duration = Duration::from_secs(45);

fn required_env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: these tests need PostgreSQL and a Kafka broker; run \
             `eval \"$(bash scripts/test-services.sh)\"` first"
        )
    })
}

fn brokers() -> String {
    required_env("HERALD_TEST_KAFKA_BROKERS")
}

/// A database of its own (random name), migrated; dropped by `finish`.
struct TestDb {
    db: Db,
    name: String,
    admin_url: String,
}

impl TestDb {
    async fn new() -> TestDb {
        let admin_url = required_env("HERALD_TEST_DATABASE_URL");
        let (url, name) = create_scratch_database(&admin_url, "herald_log")
            .await
            .expect("creating the test database");
        let db = Db::connect(&url, 5)
            .await
            .expect("connecting to the test database");
        TestDb {
            db,
            name,
            admin_url,
        }
    }

    fn pg(&self) -> &PgPool {
        match &self.db.engine {
            Engine::Postgres(pool) => pool,
            Engine::Sqlite(_) => unreachable!("a Postgres test database"),
        }
    }

    /// Commits events as postgres-es does (one transaction per command); the trigger writes the
    /// outbox in the same transaction.
    async fn commit(&self, aggregate_id: &str, sequences: std::ops::Range<i64>) {
        let mut tx = self.pg().begin().await.unwrap();
        for sequence in sequences {
            sqlx::query(
                "INSERT INTO events \
                 (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
                 VALUES ($1, $2, $3, 'JobScheduled', '1.0', $4::json, '{}'::json)",
            )
            .bind(JOB)
            .bind(aggregate_id)
            .bind(sequence)
            .bind(payload(aggregate_id, sequence).to_string())
            .execute(&mut *tx)
            .await
            .expect("inserting an event");
        }
        tx.commit().await.unwrap();
    }

    async fn unpublished(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(self.pg())
            .await
            .unwrap()
    }

    async fn finish(self) {
        self.db.any.close().await;
        self.pg().close().await;
        let mut admin = PgConnection::connect(&self.admin_url).await.unwrap();
        admin
            .execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name).as_str())
            .await
            .expect("dropping the test database");
    }
}

/// Own topics per test: tansu does not create topics on produce.
async fn kafka_config(test: &str) -> KafkaConfig {
    let mut config = KafkaConfig::new(brokers());
    config.topic_prefix = format!("{}.", unique(test));
    config.retry = fast_retry();
    ensure_topics(&config, &[JOB])
        .await
        .expect("creating topics");
    config
}

fn start_consumer(
    handler: &Arc<RecordingHandler>,
    config: &KafkaConfig,
    db: &Db,
) -> (CancellationToken, JoinHandle<()>) {
    let shutdown = CancellationToken::new();
    let handler: Arc<dyn LogHandler> = Arc::clone(handler) as Arc<dyn LogHandler>;
    let run = KafkaConsumerRunner::run(handler, config.clone(), db.clone(), shutdown.clone());
    let join = tokio::spawn(async move { run.await.expect("consumer runs") });
    (shutdown, join)
}

async fn stop(shutdown: CancellationToken, join: JoinHandle<()>) {
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), join)
        .await
        .expect("consumer stops on shutdown")
        .expect("consumer did not panic");
}

#[tokio::test]
async fn relayed_events_reach_a_consumer_in_per_aggregate_order() {
    let test = TestDb::new().await;
    let config = kafka_config("order").await;
    // Interleaved commits over three jobs; with three partitions the jobs spread out.
    for sequence in 0..5 {
        for job in ["job-a", "job-b", "job-c"] {
            test.commit(job, sequence..sequence + 1).await;
        }
    }
    let relay = OutboxRelay::new(test.pg().clone(), config.clone()).unwrap();
    assert_eq!(relay.relay_once().await.unwrap(), 15);
    assert_eq!(test.unpublished().await, 0);
    assert_eq!(
        relay.relay_once().await.unwrap(),
        0,
        "nothing left to relay"
    );

    let handler = Arc::new(RecordingHandler::new(&unique("order"), &[JOB]));
    let (shutdown, join) = start_consumer(&handler, &config, &test.db);
    assert!(wait_until(WAIT, || async { handler.seen_count() >= 15 }).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop(shutdown, join).await;

    assert_eq!(handler.seen_count(), 15, "each record exactly once");
    for job in ["job-a", "job-b", "job-c"] {
        assert_eq!(handler.sequences_seen(job), vec![0, 1, 2, 3, 4], "{job}");
    }
    let record = handler
        .seen()
        .into_iter()
        .find(|r| r.aggregate_id == "job-b" && r.sequence == 3)
        .unwrap();
    assert_eq!(
        record,
        LogRecord {
            aggregate_type: JOB.to_string(),
            aggregate_id: "job-b".to_string(),
            sequence: 3,
            event_type: "JobScheduled".to_string(),
            event_version: "1.0".to_string(),
            payload: payload("job-b", 3),
            metadata: serde_json::json!({}),
        }
    );
    test.finish().await;
}

#[tokio::test]
async fn a_relay_crash_before_marking_duplicates_records_but_loses_none() {
    let test = TestDb::new().await;
    let config = kafka_config("crash").await;
    test.commit("job-a", 0..3).await;
    test.commit("job-b", 0..2).await;
    test.commit("job-a", 3..5).await;

    let relay = OutboxRelay::new(test.pg().clone(), config.clone()).unwrap();
    assert_eq!(relay.relay_once().await.unwrap(), 7);
    // The crash: produced, but the marks never committed.
    sqlx::query("UPDATE outbox SET published_at = NULL")
        .execute(test.pg())
        .await
        .unwrap();
    // A restarted relay sends everything again, and new events after it.
    let restarted = OutboxRelay::new(test.pg().clone(), config.clone()).unwrap();
    assert_eq!(restarted.relay_once().await.unwrap(), 7);
    test.commit("job-b", 2..4).await;
    assert_eq!(restarted.relay_once().await.unwrap(), 2);
    assert_eq!(test.unpublished().await, 0);

    let handler = Arc::new(RecordingHandler::new(&unique("crash"), &[JOB]));
    let (shutdown, join) = start_consumer(&handler, &config, &test.db);
    assert!(wait_until(WAIT, || async { handler.seen_count() >= 16 }).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop(shutdown, join).await;

    // Duplicates, in order within each aggregate; no gap.
    assert_eq!(handler.seen_count(), 16);
    assert_eq!(
        handler.sequences_seen("job-a"),
        vec![0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    );
    assert_eq!(handler.sequences_seen("job-b"), vec![0, 1, 0, 1, 2, 3]);
    // The deduping consumer applied each event exactly once.
    let applied = handler.applied();
    assert_eq!(applied.len(), 9);
    let mut expected = pairs(&["job-a"], 5);
    expected.extend(pairs(&["job-b"], 4));
    assert_eq!(handler.applied_set(), expected);
    test.finish().await;
}

#[tokio::test]
async fn a_failing_record_is_retried_then_parked_and_later_records_still_flow() {
    let test = TestDb::new().await;
    let config = kafka_config("park").await;
    // A message that is not a LogRecord at all, ahead of the real ones.
    let producer: FutureProducer = config.producer_config().create().unwrap();
    producer
        .send(
            FutureRecord::to(&config.topic(JOB))
                .key("job-z")
                .payload("not a record"),
            Duration::from_secs(10),
        )
        .await
        .expect("producing a malformed message");
    test.commit("job-a", 0..3).await;
    test.commit("job-b", 0..5).await;
    let relay = OutboxRelay::new(test.pg().clone(), config.clone()).unwrap();
    assert_eq!(relay.relay_once().await.unwrap(), 8);

    let name = unique("park");
    let handler = Arc::new(RecordingHandler::new(&name, &[JOB]).failing_on("job-b", 2));
    let (shutdown, join) = start_consumer(&handler, &config, &test.db);
    let parked = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM parked_messages")
            .fetch_one(test.pg())
            .await
            .unwrap()
    };
    assert!(
        wait_until(WAIT, || async {
            handler.applied().contains(&("job-b".to_string(), 4)) && parked().await == 2
        })
        .await,
        "later records processed and both bad messages parked"
    );
    stop(shutdown, join).await;

    assert_eq!(
        handler.attempts("job-b", 2),
        3,
        "tried as often as the policy says"
    );
    let mut expected = pairs(&["job-a"], 3);
    expected.extend([0, 1, 3, 4].map(|s| ("job-b".to_string(), s)));
    assert_eq!(handler.applied_set(), expected);

    let mut rows = parked_rows(&test.db).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    // Different partitions: the order of parking between them is not fixed.
    rows.sort_by_key(|r| r.sequence);
    let malformed = &rows[0];
    assert_eq!(malformed.consumer, name);
    assert_eq!(malformed.topic, config.topic(JOB));
    assert_eq!(
        (malformed.stream_id.as_str(), malformed.sequence),
        ("job-z", -1)
    );
    assert!(
        malformed.error.starts_with("not a LogRecord"),
        "{}",
        malformed.error
    );
    assert_eq!(malformed.payload, "not a record");
    let failing = &rows[1];
    assert_eq!(failing.consumer, name);
    assert_eq!((failing.stream_id.as_str(), failing.sequence), ("job-b", 2));
    assert!((0..config.partitions as i64).contains(&failing.partition));
    assert!(failing.offset >= 0);
    assert!(
        failing.error.contains("refusing job-b#2"),
        "{}",
        failing.error
    );
    let record: LogRecord = serde_json::from_str(&failing.payload).unwrap();
    assert_eq!(record.payload, payload("job-b", 2));

    // Parked means resolved: a restarted consumer does not see the bad records again.
    let again = Arc::new(RecordingHandler::new(&name, &[JOB]));
    let (shutdown, join) = start_consumer(&again, &config, &test.db);
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop(shutdown, join).await;
    assert_eq!(again.seen_count(), 0, "{:?}", again.seen());
    assert_eq!(parked().await, 2);
    test.finish().await;
}

#[tokio::test]
async fn a_restarted_consumer_resumes_from_its_committed_offset() {
    let test = TestDb::new().await;
    let config = kafka_config("resume").await;
    test.commit("job-a", 0..4).await;
    test.commit("job-b", 0..2).await;
    let relay = OutboxRelay::new(test.pg().clone(), config.clone()).unwrap();
    assert_eq!(relay.relay_once().await.unwrap(), 6);

    let name = unique("resume");
    let first = Arc::new(RecordingHandler::new(&name, &[JOB]));
    let (shutdown, join) = start_consumer(&first, &config, &test.db);
    assert!(wait_until(WAIT, || async { first.seen_count() >= 6 }).await);
    stop(shutdown, join).await;
    assert_eq!(first.seen_count(), 6);

    test.commit("job-a", 4..6).await;
    test.commit("job-c", 0..1).await;
    assert_eq!(relay.relay_once().await.unwrap(), 3);

    let second = Arc::new(RecordingHandler::new(&name, &[JOB]));
    let (shutdown, join) = start_consumer(&second, &config, &test.db);
    assert!(wait_until(WAIT, || async { second.seen_count() >= 3 }).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop(shutdown, join).await;
    assert_eq!(second.sequences_seen("job-a"), vec![4, 5]);
    assert_eq!(second.sequences_seen("job-b"), Vec::<i64>::new());
    assert_eq!(second.sequences_seen("job-c"), vec![0]);
    test.finish().await;
}

#[tokio::test]
async fn one_relay_is_active_and_a_standby_takes_over_woken_by_notify() {
    let test = TestDb::new().await;
    let config = kafka_config("failover").await;
    let options = RelayOptions {
        // Far longer than the test waits: only LISTEN/NOTIFY explains a quick delivery.
        poll_interval: Duration::from_secs(60),
        lock_retry_interval: Duration::from_millis(200),
        ..RelayOptions::default()
    };
    let advisory_locks = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(test.pg())
        .await
        .unwrap()
    };

    let handler = Arc::new(RecordingHandler::new(&unique("failover"), &[JOB]));
    let (consumer_shutdown, consumer) = start_consumer(&handler, &config, &test.db);

    let first_shutdown = CancellationToken::new();
    let first = tokio::spawn(
        OutboxRelay::new(test.pg().clone(), config.clone())
            .unwrap()
            .with_options(options.clone())
            .run(first_shutdown.clone()),
    );
    assert!(wait_until(WAIT, || async { advisory_locks().await == 1 }).await);
    let second_shutdown = CancellationToken::new();
    let second = tokio::spawn(
        OutboxRelay::new(test.pg().clone(), config.clone())
            .unwrap()
            .with_options(options)
            .run(second_shutdown.clone()),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(advisory_locks().await, 1, "only one relay holds the lock");

    // Let the consumer join its group before measuring.
    test.commit("job-a", 0..1).await;
    assert!(wait_until(WAIT, || async { handler.seen_count() >= 1 }).await);

    let committed = Instant::now();
    test.commit("job-a", 1..3).await;
    assert!(
        wait_until(Duration::from_secs(5), || async {
            handler.seen_count() >= 3
        })
        .await
    );
    let latency = committed.elapsed();
    assert!(latency < Duration::from_secs(5), "took {latency:?}");

    // The active relay stops; the standby takes the lock and carries on.
    first_shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .expect("first relay stops")
        .unwrap();
    assert!(wait_until(WAIT, || async { advisory_locks().await == 1 }).await);
    test.commit("job-a", 3..5).await;
    assert!(
        wait_until(Duration::from_secs(10), || async {
            handler.seen_count() >= 5
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    second_shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("second relay stops")
        .unwrap();
    stop(consumer_shutdown, consumer).await;
    assert_eq!(
        handler.sequences_seen("job-a"),
        vec![0, 1, 2, 3, 4],
        "each event once: never two active relays"
    );
    assert_eq!(test.unpublished().await, 0);
    test.finish().await;
}

#[tokio::test]
async fn event_log_entry_point_runs_relay_and_consumer_for_kafka() {
    let test = TestDb::new().await;
    let mut config = KafkaConfig::new(brokers());
    config.topic_prefix = format!("{}.", unique("entry"));
    let log = EventLog::Kafka(config);
    let shutdown = CancellationToken::new();
    let relay = log
        .spawn_relay(test.db.clone(), shutdown.clone())
        .await
        .expect("Kafka has a relay");
    // The consumer creates its topics itself.
    let handler = Arc::new(RecordingHandler::new(&unique("entry"), &[JOB]));
    let consumer = log
        .spawn_consumer(handler.clone(), test.db.clone(), shutdown.clone())
        .await;
    test.commit("job-a", 0..3).await;
    log.notify_committed();
    assert!(wait_until(WAIT, || async { handler.seen_count() >= 3 }).await);
    shutdown.cancel();
    for task in [relay, consumer] {
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("stops on shutdown")
            .unwrap();
    }
    assert_eq!(handler.sequences_seen("job-a"), vec![0, 1, 2]);
    test.finish().await;
}

#[tokio::test]
async fn the_relay_leaves_rows_the_broker_did_not_acknowledge_unpublished() {
    let test = TestDb::new().await;
    let cluster = MockCluster::new(1).expect("mock cluster");
    let mut config = KafkaConfig::new(cluster.bootstrap_servers());
    config.message_timeout = Duration::from_secs(2);
    cluster.create_topic(&config.topic(JOB), 1, 1).unwrap();
    test.commit("job-a", 0..3).await;
    test.commit("job-b", 0..2).await;
    // The mock broker has no CreateTopics; the topic is provisioned above.
    let relay = OutboxRelay::new(test.pg().clone(), config)
        .unwrap()
        .with_options(RelayOptions {
            create_topics: false,
            ..RelayOptions::default()
        });

    // Every produce request is refused.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 50],
    );
    let error = relay
        .relay_once()
        .await
        .expect_err("nothing was acknowledged");
    assert!(error.to_string().contains("delivered 0 of 5"), "{error:#}");
    assert_eq!(test.unpublished().await, 5, "no undelivered row is marked");

    // The broker recovers: the same rows go out and only then are marked. librdkafka keeps the
    // topic's authorization error until its next metadata refresh, so this takes a few rounds,
    // as it would for the running relay.
    cluster.clear_request_errors(RDKafkaApiKey::Produce);
    let mut rounds = 0;
    let delivered = loop {
        rounds += 1;
        match relay.relay_once().await {
            Ok(delivered) => break delivered,
            Err(error) if rounds < 20 => {
                assert_eq!(test.unpublished().await, 5, "{error:#}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => panic!("never delivered after recovery: {error:#}"),
        }
    };
    assert_eq!(delivered, 5);
    assert_eq!(test.unpublished().await, 0);
    test.finish().await;
}

#[tokio::test]
async fn the_local_log_refuses_postgres() {
    let test = TestDb::new().await;
    let handler: Arc<dyn LogHandler> = Arc::new(RecordingHandler::new("local-on-pg", &[JOB]));
    let result = LocalConsumerRunner::run(
        handler,
        LocalLog::new(test.db.clone()),
        CancellationToken::new(),
    )
    .await;
    let error = result.expect_err("Postgres outbox ids do not follow commit order");
    assert!(error.to_string().contains("SQLite"), "{error:#}");
    test.finish().await;
}

#[tokio::test]
async fn published_rows_older_than_the_retention_are_deleted() {
    let test = TestDb::new().await;
    test.commit("job-a", 0..4).await;
    // Two rows published long ago, one just now, one not yet.
    sqlx::query(
        "UPDATE outbox SET published_at = now() - interval '30 hours' \
         WHERE aggregate_id = 'job-a' AND sequence < 2",
    )
    .execute(test.pg())
    .await
    .unwrap();
    sqlx::query("UPDATE outbox SET published_at = now() WHERE sequence = 2")
        .execute(test.pg())
        .await
        .unwrap();
    // Never contacted: cleanup only touches Postgres.
    let relay = OutboxRelay::new(test.pg().clone(), KafkaConfig::new("127.0.0.1:9"))
        .unwrap()
        .with_options(RelayOptions {
            retention: Duration::from_secs(24 * 3600),
            ..RelayOptions::default()
        });
    assert_eq!(relay.cleanup().await.unwrap(), 2);
    let left: Vec<i64> = sqlx::query_scalar("SELECT sequence FROM outbox ORDER BY sequence")
        .fetch_all(test.pg())
        .await
        .unwrap();
    assert_eq!(left, vec![2, 3]);
    test.finish().await;
}
