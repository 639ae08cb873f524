//! The local event log over a SQLite outbox: order, resume from the stored position, parking,
//! and the commit notification.
#[path = "log_support.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_infrastructure::db::{Db, Engine};
use herald_infrastructure::log::{EventLog, LocalConsumerRunner, LocalLog, LogHandler, LogRecord};
use sqlx::sqlite::SqlitePool;
use support::{
    fast_retry, pairs, parked_rows, payload, unique, wait_until, RecordingHandler, CONNECTION, JOB,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

/// A fresh SQLite database file with the migrations applied; removed on drop.
struct TestDb {
    db: Db,
    path: std::path::PathBuf,
}

impl TestDb {
    async fn new() -> TestDb {
        let path = std::env::temp_dir().join(format!("{}.db", unique("herald_log_local")));
        let db = Db::connect(&format!("sqlite://{}", path.display()), 4)
            .await
            .expect("opening the SQLite test database");
        TestDb { db, path }
    }

    fn pool(&self) -> &SqlitePool {
        match &self.db.engine {
            Engine::Sqlite(pool) => pool,
            Engine::Postgres(_) => unreachable!("a SQLite test database"),
        }
    }

    /// Commits one event the way sqlite-es does: a row in `events`; the trigger writes the outbox.
    async fn commit(&self, aggregate_type: &str, aggregate_id: &str, sequence: i64) {
        sqlx::query(
            "INSERT INTO events \
             (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             VALUES ($1, $2, $3, 'JobScheduled', '1.0', $4, '{}')",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(sequence)
        .bind(payload(aggregate_id, sequence).to_string())
        .execute(self.pool())
        .await
        .expect("inserting an event");
    }

    async fn outbox_id(&self, aggregate_id: &str, sequence: i64) -> i64 {
        sqlx::query_scalar("SELECT id FROM outbox WHERE aggregate_id = $1 AND sequence = $2")
            .bind(aggregate_id)
            .bind(sequence)
            .fetch_one(self.pool())
            .await
            .expect("outbox id")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
        }
    }
}

fn start(handler: &Arc<RecordingHandler>, log: &LocalLog) -> (CancellationToken, JoinHandle<()>) {
    let shutdown = CancellationToken::new();
    let handler: Arc<dyn LogHandler> = Arc::clone(handler) as Arc<dyn LogHandler>;
    let task = tokio::spawn(LocalConsumerRunner::run(
        handler,
        log.clone(),
        shutdown.clone(),
    ));
    let join = tokio::spawn(async move {
        task.await.expect("runner task").expect("runner result");
    });
    (shutdown, join)
}

async fn stop(shutdown: CancellationToken, join: JoinHandle<()>) {
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), join)
        .await
        .expect("runner stops on shutdown")
        .expect("runner did not panic");
}

#[tokio::test]
async fn records_arrive_in_commit_order_and_only_for_subscribed_types() {
    let test = TestDb::new().await;
    // Interleaved commits of three jobs, plus a connection the handler does not subscribe to.
    for sequence in 0..5 {
        for job in ["job-a", "job-b", "job-c"] {
            test.commit(JOB, job, sequence).await;
        }
        test.commit(CONNECTION, "conn-1", sequence).await;
    }
    let log = LocalLog::new(test.db.clone());
    let handler = Arc::new(RecordingHandler::new(&unique("order"), &[JOB]));
    let (shutdown, join) = start(&handler, &log);

    assert!(wait_until(WAIT, || async { handler.seen_count() >= 15 }).await);
    // Nothing more trickles in (the connection events are not ours).
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop(shutdown, join).await;

    let seen = handler.seen();
    assert_eq!(seen.len(), 15);
    let order: Vec<(String, i64)> = seen
        .iter()
        .map(|r| (r.aggregate_id.clone(), r.sequence))
        .collect();
    let expected: Vec<(String, i64)> = (0..5)
        .flat_map(|s| ["job-a", "job-b", "job-c"].map(|j| (j.to_string(), s)))
        .collect();
    assert_eq!(
        order, expected,
        "the local log is totally ordered by commit"
    );
    assert_eq!(
        seen[4],
        LogRecord {
            aggregate_type: JOB.to_string(),
            aggregate_id: "job-b".to_string(),
            sequence: 1,
            event_type: "JobScheduled".to_string(),
            event_version: "1.0".to_string(),
            payload: payload("job-b", 1),
            metadata: serde_json::json!({}),
        }
    );
    // The stored position is the last outbox id resolved.
    let last = test.outbox_id("job-c", 4).await;
    assert_eq!(log.position(handler.name()).await.unwrap(), last);
}

#[tokio::test]
async fn a_restarted_consumer_resumes_from_its_stored_position() {
    let test = TestDb::new().await;
    for sequence in 0..4 {
        test.commit(JOB, "job-a", sequence).await;
    }
    let log = LocalLog::new(test.db.clone());
    let name = unique("resume");

    let first = Arc::new(RecordingHandler::new(&name, &[JOB]));
    let (shutdown, join) = start(&first, &log);
    assert!(wait_until(WAIT, || async { first.seen_count() >= 4 }).await);
    stop(shutdown, join).await;
    assert_eq!(first.sequences_seen("job-a"), vec![0, 1, 2, 3]);

    for sequence in 4..7 {
        test.commit(JOB, "job-a", sequence).await;
    }
    let second = Arc::new(RecordingHandler::new(&name, &[JOB]));
    let (shutdown, join) = start(&second, &log);
    assert!(wait_until(WAIT, || async { second.seen_count() >= 3 }).await);
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop(shutdown, join).await;
    assert_eq!(second.sequences_seen("job-a"), vec![4, 5, 6]);

    // Another consumer has its own position and starts from the beginning.
    let other = Arc::new(RecordingHandler::new(&unique("other"), &[JOB]));
    let (shutdown, join) = start(&other, &log);
    assert!(wait_until(WAIT, || async { other.seen_count() >= 7 }).await);
    stop(shutdown, join).await;
    assert_eq!(other.sequences_seen("job-a"), (0..7).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_failing_record_is_retried_then_parked_and_later_records_still_flow() {
    let test = TestDb::new().await;
    for sequence in 0..5 {
        test.commit(JOB, "job-a", sequence).await;
        test.commit(JOB, "job-b", sequence).await;
    }
    // A row that is not a valid record (its payload is not JSON).
    sqlx::query(
        "INSERT INTO outbox \
         (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ($1, 'job-z', 0, 'JobScheduled', '1.0', 'not json', '{}')",
    )
    .bind(JOB)
    .execute(test.pool())
    .await
    .unwrap();
    test.commit(JOB, "job-b", 5).await;

    let log = LocalLog::new(test.db.clone()).with_retry(fast_retry());
    let name = unique("parking");
    let handler = Arc::new(RecordingHandler::new(&name, &[JOB]).failing_on("job-b", 2));
    let (shutdown, join) = start(&handler, &log);
    assert!(
        wait_until(WAIT, || async {
            handler.applied().contains(&("job-b".to_string(), 5))
        })
        .await,
        "records after the failing one are processed"
    );
    stop(shutdown, join).await;

    assert_eq!(
        handler.attempts("job-b", 2),
        3,
        "tried as often as the policy says"
    );
    let mut expected = pairs(&["job-a"], 5);
    expected.extend([0, 1, 3, 4, 5].map(|s| ("job-b".to_string(), s)));
    assert_eq!(handler.applied_set(), expected);

    let parked = parked_rows(&test.db).await;
    assert_eq!(parked.len(), 2, "{parked:?}");

    let failing = &parked[0];
    assert_eq!(failing.consumer, name);
    assert_eq!(failing.topic, "herald.publishing_job");
    assert_eq!(failing.partition, 0);
    assert_eq!(failing.offset, test.outbox_id("job-b", 2).await);
    assert_eq!((failing.stream_id.as_str(), failing.sequence), ("job-b", 2));
    assert!(
        failing.error.contains("refusing job-b#2"),
        "{}",
        failing.error
    );
    let record: LogRecord =
        serde_json::from_str(&failing.payload).expect("parked payload is the record");
    assert_eq!(record.payload, payload("job-b", 2));

    let malformed = &parked[1];
    assert_eq!(malformed.offset, test.outbox_id("job-z", 0).await);
    assert_eq!(malformed.stream_id, "job-z");
    assert!(
        malformed.error.starts_with("not a LogRecord"),
        "{}",
        malformed.error
    );
    assert!(
        malformed.payload.contains("not json"),
        "{}",
        malformed.payload
    );

    // The position moved past everything, parked records included.
    let last = test.outbox_id("job-b", 5).await;
    assert_eq!(log.position(&name).await.unwrap(), last);
}

#[tokio::test]
async fn a_commit_notification_wakes_consumers_without_waiting_for_the_poll() {
    let test = TestDb::new().await;
    // A poll far longer than the test allows, so only the notification can explain delivery.
    let local = LocalLog::new(test.db.clone()).with_poll_interval(Duration::from_secs(60));
    let log = EventLog::Local(local);
    let shutdown = CancellationToken::new();
    assert!(
        log.spawn_relay(test.db.clone(), shutdown.clone())
            .await
            .is_some(),
        "the local log runs its upkeep (pruning) in place of a relay"
    );

    let first = Arc::new(RecordingHandler::new(&unique("wake1"), &[JOB]));
    let second = Arc::new(RecordingHandler::new(&unique("wake2"), &[JOB]));
    let tasks = [
        log.spawn_consumer(first.clone(), test.db.clone(), shutdown.clone())
            .await,
        log.spawn_consumer(second.clone(), test.db.clone(), shutdown.clone())
            .await,
    ];
    // Let both runners go idle, waiting on the notification.
    tokio::time::sleep(Duration::from_millis(300)).await;

    for round in 0..3 {
        test.commit(JOB, "job-a", round).await;
        let committed = Instant::now();
        log.notify_committed();
        assert!(
            wait_until(Duration::from_secs(2), || async {
                first.seen_count() > round as usize && second.seen_count() > round as usize
            })
            .await,
            "round {round}: both consumers woke"
        );
        assert!(committed.elapsed() < Duration::from_secs(2));
    }

    shutdown.cancel();
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("consumer stops")
            .expect("consumer did not panic");
    }
    assert_eq!(first.sequences_seen("job-a"), vec![0, 1, 2]);
    assert_eq!(second.sequences_seen("job-a"), vec![0, 1, 2]);
}

#[tokio::test]
async fn pruning_deletes_only_what_every_consumer_has_handled() {
    let test = TestDb::new().await;
    for sequence in 0..4 {
        test.commit(JOB, "job-p", sequence).await;
    }
    let log = LocalLog::new(test.db.clone());
    let ahead = Arc::new(RecordingHandler::new(&unique("ahead"), &[JOB]));
    let (shutdown, join) = start(&ahead, &log);
    assert!(wait_until(WAIT, || async { ahead.seen_count() >= 4 }).await);
    stop(shutdown, join).await;
    // A second consumer that has handled only the first two records.
    let behind = unique("behind");
    let second_id = test.outbox_id("job-p", 1).await;
    sqlx::query("INSERT INTO log_consumer_offsets (consumer, position) VALUES ($1, $2)")
        .bind(&behind)
        .bind(second_id)
        .execute(test.pool())
        .await
        .unwrap();

    // Nothing is old enough under a day's retention.
    assert_eq!(log.prune(Duration::from_secs(24 * 3600)).await.unwrap(), 0);
    assert_eq!(log.prune(Duration::ZERO).await.unwrap(), 2);
    let left: Vec<i64> =
        sqlx::query_scalar("SELECT sequence FROM outbox WHERE aggregate_id = 'job-p' ORDER BY id")
            .fetch_all(test.pool())
            .await
            .unwrap();
    assert_eq!(left, vec![2, 3]);
}
