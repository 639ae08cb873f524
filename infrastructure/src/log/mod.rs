//! The event log: what the relay publishes from the outbox and what process managers and
//! projections consume. Two implementations with the same semantics — Kafka (production) and a
//! local log over the SQLite outbox (embedded default) — so consumers never know which they read.
//!
//! Semantics: at-least-once, ordered per aggregate (records are keyed by aggregate id), and a
//! consumer's position only moves past a record once its handler has succeeded (or the record was
//! parked in `parked_messages` after repeated failures).
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cqrs_es::persist::SerializedEvent;
use herald_domain::EventHandler;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::db::{Db, Engine};

mod consume;
pub mod kafka;
pub mod local;
pub mod relay;

pub use consume::{parked_total, RetryPolicy};
pub use kafka::{ensure_topics, KafkaConfig, KafkaConsumerRunner};

/// How often a consumer that is behind measures how far.
pub(crate) const LAG_MEASURE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Sets `herald_consumer_lag_records` for `consumer`: the records on the log it has not handled
/// yet, of the partitions this process holds (sum over processes for the group's lag).
pub(crate) fn record_consumer_lag(consumer: &str, lag: i64) {
    metrics::gauge!("herald_consumer_lag_records", "consumer" => consumer.to_owned())
        .set(lag.max(0) as f64);
}
pub use local::{LocalConsumerRunner, LocalLog};
pub use relay::{OutboxRelay, RelayOptions};

/// One event as it travels on the log. The same JSON is the Kafka message value. It is the
/// event as stored, at the version it was stored with; readers upcast it (see
/// [`herald_domain::stored`]).
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
    /// The stored event this record carries, as event handlers take it.
    pub fn to_event(&self) -> anyhow::Result<SerializedEvent> {
        Ok(SerializedEvent::new(
            self.aggregate_id.clone(),
            usize::try_from(self.sequence).context("a negative sequence")?,
            self.aggregate_type.clone(),
            self.event_type.clone(),
            self.event_version.clone(),
            self.payload.clone(),
            self.metadata.clone(),
        ))
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

/// Something that reacts to log records exactly as they travel. Projections and process managers
/// implement [`EventHandler`] instead, which reads events through their upcasters; every
/// `EventHandler` is a `LogHandler` (below). It must be idempotent (it will see a record again
/// after a crash) and record what it applied in the same transaction as its effect.
#[async_trait::async_trait]
pub trait LogHandler: Send + Sync + 'static {
    /// Consumer name: the Kafka consumer group and the key of its stored positions.
    fn name(&self) -> &str;
    /// Aggregate types this handler wants (topics it subscribes to).
    fn aggregate_types(&self) -> &[&'static str];
    /// Applies one record. An error means "not applied"; the runner retries, then parks.
    async fn handle(&self, record: &LogRecord) -> anyhow::Result<()>;
    /// Applies records that arrived together, in order, if this handler can make them durable
    /// at once (one transaction instead of one commit per record). `None` (the default) means
    /// it cannot, and the runners call `handle` record by record. On `Some(Err(..))` the runners
    /// also fall back to `handle` record by record, with the retry policy applied per record, so
    /// a batch need not be all-or-nothing but must stay idempotent.
    async fn handle_batch(&self, _records: &[LogRecord]) -> Option<anyhow::Result<()>> {
        None
    }
}

/// Every event handler (a projection's feed, a process manager) consumes the log: it gets each
/// record as the stored event it carries and reads it through its upcasters.
#[async_trait::async_trait]
impl<H: EventHandler> LogHandler for H {
    fn name(&self) -> &str {
        EventHandler::name(self)
    }

    fn aggregate_types(&self) -> &[&'static str] {
        EventHandler::aggregate_types(self)
    }

    async fn handle(&self, record: &LogRecord) -> anyhow::Result<()> {
        EventHandler::handle(self, &record.to_event()?)
            .await
            .map_err(anyhow::Error::from_boxed)
    }

    async fn handle_batch(&self, records: &[LogRecord]) -> Option<anyhow::Result<()>> {
        let events: Vec<_> = match records.iter().map(LogRecord::to_event).collect() {
            Ok(events) => events,
            Err(error) => return Some(Err(error)),
        };
        let done = EventHandler::handle_batch(self, &events).await?;
        Some(done.map_err(anyhow::Error::from_boxed))
    }
}

/// How long the local log keeps records every consumer has handled.
const LOCAL_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// The event log the process runs on, so wiring code starts consumers and the relay without
/// knowing which log it is. Both have the semantics in the module documentation.
#[derive(Debug, Clone)]
pub enum EventLog {
    /// Production: Postgres outbox → relay → Kafka topics → consumer groups.
    Kafka(KafkaConfig),
    /// Embedded default: consumers read the SQLite outbox directly.
    Local(LocalLog),
}

impl EventLog {
    /// Starts `handler` as a consumer until `shutdown`. With Kafka it first creates the
    /// handler's topics if needed (a failure there is only logged), and joins the consumer group `handler.name()`; with the local
    /// log it reads from the position stored under `handler.name()` (the local log's own
    /// database is used; `db` is for Kafka's parked messages). If the consumer cannot start
    /// (broker or database unreachable) it is retried every few seconds until `shutdown`.
    pub async fn spawn_consumer(
        &self,
        handler: Arc<dyn LogHandler>,
        db: Db,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        let log = self.clone();
        tokio::spawn(async move {
            while !shutdown.is_cancelled() {
                let result = match &log {
                    EventLog::Kafka(config) => {
                        if let Err(error) = ensure_topics(config, handler.aggregate_types()).await {
                            // Not fatal: the topics may be provisioned and creating them refused.
                            tracing::warn!(
                                consumer = handler.name(),
                                error = %format!("{error:#}"),
                                "could not create topics; subscribing anyway"
                            );
                        }
                        KafkaConsumerRunner::run(
                            Arc::clone(&handler),
                            config.clone(),
                            db.clone(),
                            shutdown.clone(),
                        )
                        .await
                    }
                    EventLog::Local(local) => {
                        LocalConsumerRunner::run(
                            Arc::clone(&handler),
                            local.clone(),
                            shutdown.clone(),
                        )
                        .await
                    }
                };
                match result {
                    Ok(()) => break,
                    Err(error) => tracing::error!(
                        consumer = handler.name(),
                        error = %format!("{error:#}"),
                        "consumer could not run; retrying"
                    ),
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        })
    }

    /// Starts the log's upkeep until `shutdown`. Kafka: the outbox relay (it needs `db` to be
    /// Postgres; with SQLite it logs an error and returns None); any number of processes may
    /// start one, one at a time is active. Local: pruning of records every consumer has handled
    /// (its outbox is the log itself, so there is nothing to relay).
    pub async fn spawn_relay(&self, db: Db, shutdown: CancellationToken) -> Option<JoinHandle<()>> {
        let config = match self {
            EventLog::Kafka(config) => config,
            // The local log needs no relay, only upkeep: its outbox is the log.
            EventLog::Local(local) => {
                return Some(tokio::spawn(local.clone().run_pruning(
                    LOCAL_RETENTION,
                    Duration::from_secs(600),
                    shutdown,
                )))
            }
        };
        let Engine::Postgres(pg) = db.engine else {
            tracing::error!("the Kafka outbox relay needs Postgres; no relay started");
            return None;
        };
        match OutboxRelay::new(pg, config.clone()) {
            Ok(relay) => Some(tokio::spawn(relay.run(shutdown))),
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "no outbox relay started");
                None
            }
        }
    }

    /// Readiness: whether the log can be used now, and how many committed events the relay has
    /// not put on it yet (Kafka; the local log is its outbox, so it has no relay lag).
    pub async fn readiness(&self, db: &Db) -> anyhow::Result<Option<i64>> {
        match self {
            EventLog::Kafka(config) => {
                kafka::check_brokers(config, Duration::from_secs(3)).await?;
                self.relay_lag(db).await
            }
            EventLog::Local(_) => {
                sqlx::query("SELECT id FROM outbox ORDER BY id DESC LIMIT 1")
                    .fetch_optional(&db.any)
                    .await
                    .context("reading the local log")?;
                Ok(None)
            }
        }
    }

    /// How many committed events the relay has not put on Kafka yet; `None` for the local log,
    /// which is its outbox. One indexed count (`outbox_unpublished`), no broker round trip.
    pub async fn relay_lag(&self, db: &Db) -> anyhow::Result<Option<i64>> {
        if let EventLog::Local(_) = self {
            return Ok(None);
        }
        let lag: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&db.any)
            .await
            .context("counting the outbox rows not yet relayed")?;
        Ok(Some(lag))
    }

    /// Tells the log that events were committed: wakes local consumers at once; nothing to do
    /// for Kafka, where Postgres notifies the relay.
    pub fn notify_committed(&self) {
        if let EventLog::Local(local) = self {
            local.notify_committed();
        }
    }
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
