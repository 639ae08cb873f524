//! The outbox relay: moves committed events from the Postgres outbox to Kafka.
//!
//! At-least-once: a row is marked published only after Kafka acknowledged it (`acks=all`), so a
//! crash between produce and mark sends it again (consumers dedupe by aggregate id and sequence)
//! and nothing committed is lost. Per-aggregate order: rows go out in outbox id order, keyed by
//! aggregate id (so one aggregate's records share a partition), with one request in flight per
//! connection; if a delivery fails, only the rows before it are marked, and the rest is sent
//! again, in order, on the next round.
//!
//! One relay is active across all processes: the one holding a Postgres advisory lock on its
//! own connection. The others stand by and try to take the lock every few seconds.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::postgres::{PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::Connection;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::kafka::{ensure_topics, KafkaConfig};
use super::LogRecord;

/// The channel the outbox trigger notifies on commit.
const OUTBOX_CHANNEL: &str = "herald_outbox";

/// Advisory lock key of the active relay ("herald" in ASCII, then 1).
pub const RELAY_LOCK_KEY: i64 = 0x6865_7261_6c64_0001;

/// Tuning of [`OutboxRelay`]; the defaults suit production.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Most rows read and produced per round.
    pub batch_size: i64,
    /// Look at the outbox this often even without a notification (a lost `NOTIFY`, a listener
    /// reconnecting, or a retry after a failed delivery).
    pub poll_interval: Duration,
    /// How often a standby relay tries to become the active one.
    pub lock_retry_interval: Duration,
    /// Published rows older than this are deleted.
    pub retention: Duration,
    /// How often the deletion runs.
    pub cleanup_interval: Duration,
    /// The advisory lock that elects the active relay.
    pub lock_key: i64,
    /// Create a topic the first time an aggregate type shows up (brokers such as tansu do not
    /// auto-create). Off where the relay may not create topics and they are provisioned.
    pub create_topics: bool,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            lock_retry_interval: Duration::from_secs(2),
            retention: Duration::from_secs(24 * 3600),
            cleanup_interval: Duration::from_secs(600),
            lock_key: RELAY_LOCK_KEY,
            create_topics: true,
        }
    }
}

/// Relays the Postgres outbox to Kafka. See the module documentation for the guarantees.
pub struct OutboxRelay {
    pg: PgPool,
    config: KafkaConfig,
    producer: FutureProducer,
    options: RelayOptions,
    /// Aggregate types whose topic was created (None) or whose creation failed (when), so each
    /// is created once per process and a failing creation is retried only now and then.
    ensured_topics: Mutex<HashMap<String, Option<Instant>>>,
}

/// One unpublished outbox row.
#[derive(Debug, sqlx::FromRow)]
struct OutboxRow {
    id: i64,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: serde_json::Value,
    metadata: serde_json::Value,
}

/// A message ready to produce.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub topic: String,
    pub key: String,
    pub value: Vec<u8>,
}

/// How a batch went: the first `delivered` messages were acknowledged; `error` is why the next
/// one was not (None when all were).
#[derive(Debug)]
pub(crate) struct BatchDelivery {
    pub delivered: usize,
    pub error: Option<KafkaError>,
}

impl OutboxRelay {
    /// A relay over `pg`'s outbox producing to the brokers in `producer_config`. Fails only if
    /// the producer settings are invalid.
    pub fn new(pg: PgPool, producer_config: KafkaConfig) -> anyhow::Result<Self> {
        let producer: FutureProducer = producer_config
            .producer_config()
            .create()
            .context("creating the Kafka producer")?;
        Ok(OutboxRelay {
            pg,
            config: producer_config,
            producer,
            options: RelayOptions::default(),
            ensured_topics: Mutex::new(HashMap::new()),
        })
    }

    /// Replaces the default tuning.
    pub fn with_options(mut self, options: RelayOptions) -> Self {
        self.options = options;
        self
    }

    /// Runs until `shutdown`: stands by until it holds the relay lock, then relays on every
    /// outbox notification and at least every `poll_interval`, and deletes old published rows.
    /// If the lock's connection is lost it goes back to standing by.
    #[tracing::instrument(skip_all)]
    pub async fn run(self, shutdown: CancellationToken) {
        let mut announced_standby = false;
        // A standby keeps its connection between tries instead of reconnecting every time.
        let mut standby: Option<PgConnection> = None;
        while !shutdown.is_cancelled() {
            match self.try_lock(standby.take()).await {
                Ok((true, lock)) => {
                    announced_standby = false;
                    tracing::info!("outbox relay is active");
                    if let Err(error) = self.relay_while_locked(lock, &shutdown).await {
                        tracing::warn!(error = %format!("{error:#}"), "outbox relay stopped being active");
                    }
                }
                Ok((false, conn)) => {
                    standby = Some(conn);
                    if !announced_standby {
                        tracing::info!("another outbox relay is active; standing by");
                        announced_standby = true;
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "could not try the relay lock")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.options.lock_retry_interval) => {}
            }
        }
        if let Some(conn) = standby {
            let _ = conn.close().await;
        }
        // Nothing is in flight here: every round awaits all its acknowledgements before returning.
    }

    /// One round without the lock (tests, tools): reads up to `batch_size` unpublished rows in id
    /// order, produces them, waits for every acknowledgement and marks the acknowledged prefix
    /// published. Returns how many rows were marked; an error if a delivery failed (the rows
    /// before it are marked all the same) or the database could not be reached.
    #[tracing::instrument(skip_all)]
    pub async fn relay_once(&self) -> anyhow::Result<usize> {
        let rows: Vec<OutboxRow> = sqlx::query_as(
            "SELECT id, aggregate_type, aggregate_id, sequence, event_type, event_version, \
                    payload, metadata \
             FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(self.options.batch_size)
        .fetch_all(&self.pg)
        .await
        .context("reading the outbox")?;
        if rows.is_empty() {
            return Ok(0);
        }
        if self.options.create_topics {
            self.ensure_topics_of(&rows).await;
        }

        let mut ids = Vec::with_capacity(rows.len());
        let mut outgoing = Vec::with_capacity(rows.len());
        for row in rows {
            ids.push(row.id);
            let topic = self.config.topic(&row.aggregate_type);
            let key = row.aggregate_id.clone();
            let record = LogRecord {
                aggregate_type: row.aggregate_type,
                aggregate_id: row.aggregate_id,
                sequence: row.sequence,
                event_type: row.event_type,
                event_version: row.event_version,
                payload: row.payload,
                metadata: row.metadata,
            };
            let value = serde_json::to_vec(&record).context("encoding a log record")?;
            outgoing.push(Outgoing { topic, key, value });
        }

        let outcome = deliver_in_order(&self.producer, &outgoing).await;
        let delivered = &ids[..outcome.delivered];
        if !delivered.is_empty() {
            sqlx::query("UPDATE outbox SET published_at = now() WHERE id = ANY($1)")
                .bind(delivered)
                .execute(&self.pg)
                .await
                .context("marking outbox rows published")?;
        }
        match outcome.error {
            None => Ok(outcome.delivered),
            Some(error) => Err(anyhow::anyhow!(
                "delivered {} of {} outbox rows; the rest will be retried: {error}",
                outcome.delivered,
                ids.len()
            )),
        }
    }

    /// Deletes rows published longer ago than the retention. Returns how many.
    #[tracing::instrument(skip_all)]
    pub async fn cleanup(&self) -> anyhow::Result<u64> {
        let deleted = sqlx::query(
            "DELETE FROM outbox \
             WHERE published_at IS NOT NULL AND published_at < now() - make_interval(secs => $1)",
        )
        .bind(self.options.retention.as_secs_f64())
        .execute(&self.pg)
        .await
        .context("deleting published outbox rows")?
        .rows_affected();
        if deleted > 0 {
            tracing::debug!(deleted, "deleted published outbox rows");
        }
        Ok(deleted)
    }

    /// Tries the relay lock on `reuse` or a new connection; true if this relay now holds it.
    async fn try_lock(&self, reuse: Option<PgConnection>) -> anyhow::Result<(bool, PgConnection)> {
        // A dedicated connection: a session lock on a pooled one would travel with the connection.
        let mut conn = match reuse {
            Some(conn) => conn,
            None => PgConnection::connect_with(&self.pg.connect_options())
                .await
                .context("opening the relay lock connection")?,
        };
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(self.options.lock_key)
            .fetch_one(&mut conn)
            .await
            .context("trying the relay lock")?;
        Ok((locked, conn))
    }

    async fn relay_while_locked(
        &self,
        mut lock: PgConnection,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        // Its own one-connection pool: a listener holds its connection for good, which would
        // shrink the shared pool, and the shared pool closing must not end the listener early.
        let listener_pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(self.pg.connect_options().as_ref().clone());
        let mut listener = PgListener::connect_with(&listener_pool)
            .await
            .context("connecting the outbox listener")?;
        listener
            .listen(OUTBOX_CHANNEL)
            .await
            .context("listening for outbox notifications")?;
        let mut next_cleanup = Instant::now();
        while !shutdown.is_cancelled() {
            self.drain(shutdown).await;
            if Instant::now() >= next_cleanup {
                if let Err(error) = self.cleanup().await {
                    tracing::warn!(error = %format!("{error:#}"), "outbox cleanup failed");
                }
                next_cleanup = Instant::now() + self.options.cleanup_interval;
            }
            // The lock lives as long as its session: if that is gone, another relay may be active.
            sqlx::query("SELECT 1")
                .execute(&mut lock)
                .await
                .context("the relay lock connection was lost")?;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                notification = listener.recv() => {
                    if let Err(error) = notification {
                        // The listener reconnects on the next recv; poll meanwhile.
                        tracing::warn!(%error, "outbox listener error");
                        tokio::time::sleep(self.options.poll_interval).await;
                    }
                }
                _ = tokio::time::sleep(self.options.poll_interval) => {}
            }
            // Several commits coalesce into one round.
            while listener.next_buffered().is_some() {}
        }
        drop(listener);
        listener_pool.close().await;
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(self.options.lock_key)
            .execute(&mut lock)
            .await;
        let _ = lock.close().await;
        Ok(())
    }

    /// Relays until the outbox is empty or a round fails.
    async fn drain(&self, shutdown: &CancellationToken) {
        while !shutdown.is_cancelled() {
            match self.relay_once().await {
                Ok(n) if n as i64 >= self.options.batch_size => continue,
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "outbox relay round failed");
                    break;
                }
            }
        }
    }

    /// Creates missing topics. Failing is not fatal: the topic may exist already (the broker may
    /// just refuse admin requests); if it does not, delivery fails and nothing is marked.
    async fn ensure_topics_of(&self, rows: &[OutboxRow]) {
        const RETRY_CREATE_AFTER: Duration = Duration::from_secs(60);
        let missing: Vec<&str> = {
            let known = self
                .ensured_topics
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let mut missing: Vec<&str> = rows
                .iter()
                .map(|r| r.aggregate_type.as_str())
                .filter(|t| match known.get(*t) {
                    None => true,
                    Some(None) => false,
                    Some(Some(failed_at)) => failed_at.elapsed() >= RETRY_CREATE_AFTER,
                })
                .collect();
            missing.sort_unstable();
            missing.dedup();
            missing
        };
        if missing.is_empty() {
            return;
        }
        let outcome = match ensure_topics(&self.config, &missing).await {
            Ok(()) => None,
            Err(error) => {
                tracing::warn!(
                    error = %format!("{error:#}"),
                    aggregate_types = ?missing,
                    "could not create topics; producing anyway"
                );
                Some(Instant::now())
            }
        };
        let mut known = self
            .ensured_topics
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for aggregate_type in missing {
            known.insert(aggregate_type.to_string(), outcome);
        }
    }
}

/// Produces `messages` in order and waits for every acknowledgement. `delivered` counts the
/// acknowledged prefix: a message after a failed one may have been written too, but it is
/// reported undelivered so that it is sent again after the failed one (a duplicate, never a
/// reordering for consumers that skip what they have seen).
pub(crate) async fn deliver_in_order(
    producer: &FutureProducer,
    messages: &[Outgoing],
) -> BatchDelivery {
    let mut pending = Vec::with_capacity(messages.len());
    let mut enqueue_error = None;
    for message in messages {
        let record = FutureRecord::to(&message.topic)
            .key(&message.key)
            .payload(&message.value);
        match producer.send_result(record) {
            Ok(future) => pending.push(future),
            Err((error, _)) => {
                // Local queue full or a bad topic: stop here so later rows cannot overtake it.
                enqueue_error = Some(error);
                break;
            }
        }
    }
    let mut delivered = 0;
    let mut error = None;
    for future in pending {
        let result = match future.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((kafka_error, _))) => Err(kafka_error),
            Err(_canceled) => Err(KafkaError::Canceled),
        };
        match result {
            Ok(()) if error.is_none() => delivered += 1,
            Ok(()) => {}
            Err(kafka_error) => {
                if error.is_none() {
                    error = Some(kafka_error);
                }
            }
        }
    }
    BatchDelivery {
        delivered,
        error: error.or(enqueue_error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::config::ClientConfig;
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    fn messages(topic: &str, n: usize) -> Vec<Outgoing> {
        (0..n)
            .map(|i| Outgoing {
                topic: topic.to_string(),
                key: "job-1".to_string(),
                value: format!("{{\"n\":{i}}}").into_bytes(),
            })
            .collect()
    }

    fn producer(
        cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
    ) -> FutureProducer {
        let mut config = KafkaConfig::new(cluster.bootstrap_servers());
        config.message_timeout = Duration::from_millis(1500);
        let mut client: ClientConfig = config.producer_config();
        client.set("retry.backoff.ms", "50");
        client.create().expect("producer")
    }

    #[tokio::test]
    async fn a_batch_against_a_healthy_broker_is_fully_delivered() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("herald.job", 1, 1).expect("topic");
        let producer = producer(&cluster);
        let outcome = deliver_in_order(&producer, &messages("herald.job", 5)).await;
        assert_eq!(outcome.delivered, 5);
        assert!(outcome.error.is_none(), "{:?}", outcome.error);
    }

    #[tokio::test]
    async fn produce_errors_leave_the_batch_undelivered() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("herald.job", 1, 1).expect("topic");
        let producer = producer(&cluster);
        // Warm up metadata so the failure is the produce request itself.
        assert_eq!(
            deliver_in_order(&producer, &messages("herald.job", 1))
                .await
                .delivered,
            1
        );

        // A non-retriable broker error on every produce request.
        cluster.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 20],
        );
        let outcome = deliver_in_order(&producer, &messages("herald.job", 3)).await;
        assert_eq!(outcome.delivered, 0);
        assert!(outcome.error.is_some());
    }

    #[tokio::test]
    async fn a_broker_down_until_the_timeout_leaves_the_batch_undelivered() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("herald.job", 1, 1).expect("topic");
        let producer = producer(&cluster);
        assert_eq!(
            deliver_in_order(&producer, &messages("herald.job", 1))
                .await
                .delivered,
            1
        );

        cluster.broker_down(1).expect("broker down");
        let outcome = deliver_in_order(&producer, &messages("herald.job", 4)).await;
        assert_eq!(outcome.delivered, 0);
        assert!(
            matches!(outcome.error, Some(KafkaError::MessageProduction(_))),
            "{:?}",
            outcome.error
        );

        // Once the broker is back, a later round (as the relay would retry) delivers everything;
        // reconnecting may take more than one message timeout.
        cluster.broker_up(1).expect("broker up");
        let mut last = None;
        for _ in 0..10 {
            let outcome = deliver_in_order(&producer, &messages("herald.job", 4)).await;
            if outcome.delivered == 4 {
                return;
            }
            last = outcome.error;
        }
        panic!("never delivered after the broker came back: {last:?}");
    }
}
