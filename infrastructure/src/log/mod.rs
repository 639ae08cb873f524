//! The event log: what the relay publishes from the outbox and what process managers and
//! projections consume. Two implementations with the same semantics — Kafka (production) and a
//! local log over the SQLite outbox (embedded default) — so consumers never know which they read.
//!
//! Semantics: at-least-once, ordered per aggregate (records are keyed by aggregate id), and a
//! consumer's position only moves past a record once its handler has succeeded (or the record was
//! parked in `parked_messages` after repeated failures).
use serde::{Deserialize, Serialize};

/// One event as it travels on the log. The same JSON is the Kafka message value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
}

impl LogRecord {
    /// The topic an aggregate type's events go to.
    pub fn topic_for(aggregate_type: &str) -> String {
        topic_for(aggregate_type)
    }
}

/// `PublishingJob` → `herald.publishing_job`; one topic per aggregate type.
pub fn topic_for(aggregate_type: &str) -> String {
    let mut name = String::from("herald.");
    for (i, c) in aggregate_type.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                name.push('_');
            }
            name.push(c.to_ascii_lowercase());
        } else {
            name.push(c);
        }
    }
    name
}

/// Something that reacts to log records: a projection or a process manager. It must be
/// idempotent (it will see a record again after a crash) and record what it applied in the same
/// transaction as its effect.
#[async_trait::async_trait]
pub trait LogHandler: Send + Sync + 'static {
    /// Consumer name: the Kafka consumer group and the key of its stored positions.
    fn name(&self) -> &str;
    /// Aggregate types this handler wants (topics it subscribes to).
    fn aggregate_types(&self) -> &[&'static str];
    /// Applies one record. An error means "not applied"; the runner retries, then parks.
    async fn handle(&self, record: &LogRecord) -> anyhow::Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_snake_case_per_aggregate_type() {
        assert_eq!(topic_for("PublishingJob"), "herald.publishing_job");
        assert_eq!(topic_for("Connection"), "herald.connection");
    }
}
