//! Helpers shared by the event-log tests (`log_kafka.rs`, `log_local.rs` include this file as a
//! module). Built on its own by cargo as an empty test target, which is harmless.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use herald_infrastructure::log::{LogHandler, LogRecord, RetryPolicy};

pub const JOB: &str = "PublishingJob";
pub const CONNECTION: &str = "Connection";

/// A unique, SQL- and topic-safe name.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Quick retries so parking tests finish fast.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
    }
}

/// The payload the tests put in an event, so a record can be matched to its row.
pub fn payload(aggregate_id: &str, sequence: i64) -> serde_json::Value {
    serde_json::json!({ "JobScheduled": { "job": aggregate_id, "n": sequence } })
}

/// A consumer that records everything it is given and applies each (aggregate id, sequence)
/// at most once, skipping anything at or below the last sequence applied for its aggregate
/// (STYLE 8), the way projections do. It can be told to always fail on one record.
pub struct RecordingHandler {
    name: String,
    types: Vec<&'static str>,
    fail_on: Option<(String, i64)>,
    seen: Mutex<Vec<LogRecord>>,
    last_applied: Mutex<BTreeMap<String, i64>>,
    applied: Mutex<Vec<(String, i64)>>,
    attempts: Mutex<HashMap<(String, i64), u32>>,
}

impl RecordingHandler {
    pub fn new(name: &str, types: &[&'static str]) -> Self {
        RecordingHandler {
            name: name.to_string(),
            types: types.to_vec(),
            fail_on: None,
            seen: Mutex::new(Vec::new()),
            last_applied: Mutex::new(BTreeMap::new()),
            applied: Mutex::new(Vec::new()),
            attempts: Mutex::new(HashMap::new()),
        }
    }

    pub fn failing_on(mut self, aggregate_id: &str, sequence: i64) -> Self {
        self.fail_on = Some((aggregate_id.to_string(), sequence));
        self
    }

    /// Every record handed to the handler, in order, failures and duplicates included.
    pub fn seen(&self) -> Vec<LogRecord> {
        self.seen.lock().unwrap().clone()
    }

    pub fn seen_count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// The sequences handed over for one aggregate, in order.
    pub fn sequences_seen(&self, aggregate_id: &str) -> Vec<i64> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.aggregate_id == aggregate_id)
            .map(|r| r.sequence)
            .collect()
    }

    /// What was applied (after dedupe), in order.
    pub fn applied(&self) -> Vec<(String, i64)> {
        self.applied.lock().unwrap().clone()
    }

    pub fn applied_set(&self) -> BTreeSet<(String, i64)> {
        self.applied().into_iter().collect()
    }

    pub fn attempts(&self, aggregate_id: &str, sequence: i64) -> u32 {
        self.attempts
            .lock()
            .unwrap()
            .get(&(aggregate_id.to_string(), sequence))
            .copied()
            .unwrap_or(0)
    }
}

#[async_trait::async_trait]
impl LogHandler for RecordingHandler {
    fn name(&self) -> &str {
        &self.name
    }

    fn aggregate_types(&self) -> &[&'static str] {
        &self.types
    }

    async fn handle(&self, record: &LogRecord) -> anyhow::Result<()> {
        let key = (record.aggregate_id.clone(), record.sequence);
        self.seen.lock().unwrap().push(record.clone());
        *self
            .attempts
            .lock()
            .unwrap()
            .entry(key.clone())
            .or_default() += 1;
        if self.fail_on.as_ref() == Some(&key) {
            anyhow::bail!("refusing {}#{}", key.0, key.1);
        }
        let mut last = self.last_applied.lock().unwrap();
        let applied_up_to = last.get(&record.aggregate_id).copied().unwrap_or(-1);
        if record.sequence > applied_up_to {
            last.insert(record.aggregate_id.clone(), record.sequence);
            self.applied.lock().unwrap().push(key);
        }
        Ok(())
    }
}

/// Polls `condition` until it holds or `timeout` passes; false on timeout.
pub async fn wait_until<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (aggregate id, sequence) pairs for ids × 0..count.
pub fn pairs(ids: &[&str], count: i64) -> BTreeSet<(String, i64)> {
    ids.iter()
        .flat_map(|id| (0..count).map(move |s| (id.to_string(), s)))
        .collect()
}

/// One row of `parked_messages`.
#[derive(Debug, sqlx::FromRow)]
pub struct ParkedRow {
    pub consumer: String,
    pub topic: String,
    pub partition: i64,
    pub offset: i64,
    pub stream_id: String,
    pub sequence: i64,
    pub error: String,
    pub payload: String,
}

/// Every parked message, oldest first.
pub async fn parked_rows(db: &herald_infrastructure::db::Db) -> Vec<ParkedRow> {
    sqlx::query_as(
        "SELECT consumer, topic, CAST(partition AS BIGINT) AS partition, \"offset\", stream_id, \
         sequence, error, payload FROM parked_messages ORDER BY id",
    )
    .fetch_all(&db.any)
    .await
    .expect("reading parked_messages")
}
