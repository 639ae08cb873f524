//! The production event log: Kafka topics (one per aggregate type, keyed by aggregate id), the
//! topic set-up, and the consumer runner that feeds a [`LogHandler`].
//!
//! The consumer stores an offset only after its record was handled or parked, and handles the
//! records of a partition strictly in order (one at a time), so a later offset can never be
//! committed while an earlier record of the same partition is unresolved.
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::consume::{handle_with_retry, park_until_done, Outcome, ParkedMessage, RetryPolicy};
use futures::FutureExt;

use super::{topic_for, LogHandler, LogRecord};
use crate::db::Db;

/// How to reach Kafka and how Herald's topics look.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `bootstrap.servers`, e.g. `127.0.0.1:9092,127.0.0.2:9092`.
    pub brokers: String,
    /// `client.id`, shown in broker logs.
    pub client_id: String,
    /// Partitions of a newly created topic.
    pub partitions: i32,
    /// Replication factor of a newly created topic.
    pub replication: i32,
    /// Put before every topic name; empty in production, unique per test so tests sharing one
    /// broker do not see each other's records.
    pub topic_prefix: String,
    /// Handler retries before a record is parked.
    pub retry: RetryPolicy,
    /// How long the producer keeps trying to deliver one record (`message.timeout.ms`) before the
    /// relay gives up on the batch and tries again later.
    pub message_timeout: Duration,
}

impl KafkaConfig {
    /// Defaults: client id `herald`, 3 partitions, replication 1, no topic prefix.
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            client_id: "herald".to_string(),
            partitions: 3,
            replication: 1,
            topic_prefix: String::new(),
            retry: RetryPolicy::default(),
            message_timeout: Duration::from_secs(10),
        }
    }

    /// The consumer group of a handler: prefixed like the topics, so environments (and tests)
    /// sharing a cluster never share a group and never wait on each other's rebalances.
    pub fn group_id(&self, handler_name: &str) -> String {
        format!("{}{handler_name}", self.topic_prefix)
    }

    /// The topic an aggregate type's records go to: the prefix plus [`topic_for`].
    pub fn topic(&self, aggregate_type: &str) -> String {
        format!("{}{}", self.topic_prefix, topic_for(aggregate_type))
    }

    /// Producer settings for the relay: every in-sync replica acknowledges (`acks=all`), one
    /// request in flight per connection so a retried request cannot overtake a later one (the
    /// idempotent producer, which would make that safe, is off because not every broker — the
    /// test broker tansu among them — supports it), and a short linger for latency.
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set("acks", "all")
            .set("enable.idempotence", "false")
            .set("max.in.flight.requests.per.connection", "1")
            .set("linger.ms", "2")
            .set("retry.backoff.ms", "100")
            .set(
                "message.timeout.ms",
                self.message_timeout.as_millis().max(1).to_string(),
            )
            // The Java client's partitioner, so every client maps a key to the same partition.
            .set("partitioner", "murmur2_random");
        config
    }

    /// Consumer settings for a consumer group: offsets are stored by hand after success and
    /// committed in the background (only stored offsets are committed) and on shutdown; fetches
    /// return quickly for end-to-end latency.
    pub fn consumer_config(&self, group_id: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set("group.id", group_id)
            .set("enable.auto.offset.store", "false")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "10")
            .set("fetch.error.backoff.ms", "50")
            // A member that dies without leaving (kill -9) holds its partitions until the
            // coordinator gives up on it: 10 s instead of the default 45 s.
            .set(
                "session.timeout.ms",
                SESSION_TIMEOUT.as_millis().to_string(),
            )
            .set("heartbeat.interval.ms", "2000");
        config
    }
}

/// Creates the topics of `aggregate_types` if they do not exist (brokers may not auto-create
/// them). A topic that already exists is success.
#[tracing::instrument(skip(config), fields(brokers = %config.brokers))]
pub async fn ensure_topics(config: &KafkaConfig, aggregate_types: &[&str]) -> anyhow::Result<()> {
    if aggregate_types.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", &config.client_id)
        .create()
        .context("creating the Kafka admin client")?;
    let names: Vec<String> = aggregate_types.iter().map(|t| config.topic(t)).collect();
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                config.partitions,
                TopicReplication::Fixed(config.replication),
            )
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(15)));
    let results = admin
        .create_topics(&topics, &options)
        .await
        .context("creating Kafka topics")?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("creating topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// Whether the brokers answer a metadata request within `timeout` (readiness).
pub async fn check_brokers(config: &KafkaConfig, timeout: Duration) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", &config.client_id)
        .create()
        .context("creating the Kafka admin client")?;
    // librdkafka's metadata call blocks its thread.
    tokio::task::spawn_blocking(move || {
        admin
            .inner()
            .fetch_metadata(None, timeout)
            .map(|_| ())
            .context("fetching Kafka metadata")
    })
    .await
    .context("the metadata request did not finish")?
}

/// Most records handed to `LogHandler::handle_batch` at once.
const MAX_BATCH: usize = 256;

/// How long the group coordinator waits for a silent member before it drops it.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a consumer checks that it is not stalled (see [`StallWatch`]).
const STALL_CHECK_EVERY: Duration = Duration::from_secs(5);
/// How long a consumer may hold no partition while its group's records wait, none of them
/// consumed by anyone, before it leaves the group and joins again.
const STALL_AFTER: Duration = Duration::from_secs(15);

/// Watches for a consumer group that is stuck: this member holds no partition, records are
/// waiting, and no member's committed offset moves. A group can end up so after a member dies
/// without leaving: the test broker (tansu 0.6) drops a dead member only when a request notices,
/// and may then settle the group with nothing assigned to anyone, for good (seen after `kill
/// -9` of a worker: its jobs stayed `publishing` in the read model). Leaving and joining again
/// starts a clean rebalance in which this member takes the partitions. A member that is idle
/// because others hold every partition sees their offsets move, or nothing waiting, and stays.
#[derive(Debug, Default)]
pub struct StallWatch {
    /// Since when this member has held nothing while records waited, and where the group's
    /// committed offsets stood then.
    idle: Option<(std::time::Instant, Vec<PartitionBacklog>)>,
}

/// A partition with records not yet consumed by the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionBacklog {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset (the low watermark if it committed nothing yet).
    pub committed: i64,
}

impl StallWatch {
    /// Takes one observation; true when the member should leave and join again. `backlog` is
    /// `None` when it could not be read (nothing is decided on a failed read).
    pub fn observe(
        &mut self,
        now: std::time::Instant,
        holds_partitions: bool,
        backlog: Option<Vec<PartitionBacklog>>,
    ) -> bool {
        let backlog = match backlog {
            Some(backlog) if !holds_partitions && !backlog.is_empty() => backlog,
            Some(_) => {
                self.idle = None;
                return false;
            }
            None => return false,
        };
        match &self.idle {
            Some((since, before)) if *before == backlog => {
                if now.duration_since(*since) >= STALL_AFTER {
                    self.idle = None;
                    return true;
                }
                false
            }
            // First idle observation, or someone consumed meanwhile: start counting again.
            _ => {
                self.idle = Some((now, backlog));
                false
            }
        }
    }
}

/// The partitions of `topics` where the consumer's group has records waiting. Blocking (it asks
/// the brokers): run off the async threads.
fn group_backlog(
    consumer: &StreamConsumer,
    topics: &[String],
) -> KafkaResult<Vec<PartitionBacklog>> {
    let timeout = Duration::from_secs(3);
    let mut partitions = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        for found in metadata.topics() {
            for partition in found.partitions() {
                partitions.add_partition(found.name(), partition.id());
            }
        }
    }
    let committed = consumer.committed_offsets(partitions, timeout)?;
    let mut backlog = Vec::new();
    for element in committed.elements() {
        let (committed, high) = offset_and_high_watermark(consumer, &element)?;
        if high > committed {
            backlog.push(PartitionBacklog {
                topic: element.topic().to_string(),
                partition: element.partition(),
                committed,
            });
        }
    }
    Ok(backlog)
}

/// Records the partitions this consumer holds have after its position. Blocking (it asks the
/// brokers for their high watermarks): run off the async threads.
fn held_partitions_lag(consumer: &StreamConsumer) -> KafkaResult<i64> {
    let mut lag = 0;
    for element in consumer.position()?.elements() {
        let (position, high) = offset_and_high_watermark(consumer, &element)?;
        lag += (high - position).max(0);
    }
    Ok(lag)
}

/// A partition's offset as `element` gives it (a position or a committed offset; the low
/// watermark when there is none yet, or when it fell behind retention) and its high watermark.
fn offset_and_high_watermark(
    consumer: &StreamConsumer,
    element: &rdkafka::topic_partition_list::TopicPartitionListElem<'_>,
) -> KafkaResult<(i64, i64)> {
    let (low, high) =
        consumer.fetch_watermarks(element.topic(), element.partition(), Duration::from_secs(3))?;
    let offset = match element.offset() {
        Offset::Offset(offset) => offset.max(low),
        _ => low,
    };
    Ok((offset, high))
}

/// Creates a consumer in the handler's group, subscribed to `topics`.
fn subscribed_consumer(
    config: &KafkaConfig,
    handler_name: &str,
    topics: &[String],
) -> anyhow::Result<Arc<StreamConsumer>> {
    let consumer: StreamConsumer = config
        .consumer_config(&config.group_id(handler_name))
        .create()
        .context("creating the Kafka consumer")?;
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topic_refs)
        .context("subscribing to the handler's topics")?;
    Ok(Arc::new(consumer))
}

/// Runs one [`LogHandler`] as a member of the Kafka consumer group named after it.
pub struct KafkaConsumerRunner;

impl KafkaConsumerRunner {
    /// Consumes the handler's topics until `shutdown`, then commits the stored offsets.
    ///
    /// Per record: decode the [`LogRecord`], call the handler (retried with backoff per
    /// `config.retry`), and on success store the offset. A record that keeps failing, or a
    /// message that is not a `LogRecord`, goes to `parked_messages` (through `db`) and its offset
    /// is stored so the partition moves on. Records are handled one at a time, in order.
    /// Returns an error only if the consumer cannot be created or subscribed.
    #[tracing::instrument(skip_all, fields(consumer = handler.name()))]
    pub async fn run(
        handler: Arc<dyn LogHandler>,
        config: KafkaConfig,
        db: Db,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let topics: Vec<String> = handler
            .aggregate_types()
            .iter()
            .map(|t| config.topic(t))
            .collect();
        let mut consumer = subscribed_consumer(&config, handler.name(), &topics)?;
        tracing::info!(?topics, "consumer started");
        let mut stall_watch = StallWatch::default();
        let mut stall_checks = tokio::time::interval(STALL_CHECK_EVERY);
        stall_checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => break,
                received = consumer.recv() => received,
                _ = stall_checks.tick() => {
                    let holds_partitions = consumer.assignment().is_ok_and(|a| a.count() > 0);
                    let backlog = if holds_partitions {
                        let held = consumer.clone();
                        if let Ok(Ok(lag)) = tokio::task::spawn_blocking(move || held_partitions_lag(&held)).await {
                            super::record_consumer_lag(handler.name(), lag);
                        }
                        Some(Vec::new())
                    } else {
                        super::record_consumer_lag(handler.name(), 0);
                        let (consumer, topics) = (consumer.clone(), topics.clone());
                        tokio::task::spawn_blocking(move || group_backlog(&consumer, &topics))
                            .await
                            .ok()
                            .and_then(|read| {
                                read.inspect_err(|error| tracing::debug!(%error, "could not read the group's backlog")).ok()
                            })
                    };
                    if stall_watch.observe(std::time::Instant::now(), holds_partitions, backlog) {
                        tracing::warn!(
                            stalled_secs = STALL_AFTER.as_secs(),
                            "this consumer holds no partition while its group's records wait and nobody consumes them: leaving the group and joining again"
                        );
                        // Leave first (closing sends LeaveGroup and waits for the broker: off
                        // the async threads), then join: a member joining while the stalled one
                        // is still in the group could inherit the same stuck state.
                        let stalled = consumer;
                        let _ = tokio::task::spawn_blocking(move || drop(stalled)).await;
                        consumer = subscribed_consumer(&config, handler.name(), &topics)?;
                    }
                    continue;
                }
            };
            let message = match received {
                Ok(message) => message,
                Err(error) => {
                    // Transient broker or subscription errors; librdkafka reconnects by itself.
                    tracing::warn!(%error, "consumer error");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                    continue;
                }
            };
            // Take whatever else is already buffered, so a busy consumer commits once per batch
            // instead of once per record.
            let mut batch = vec![message];
            while batch.len() < MAX_BATCH {
                match consumer.recv().now_or_never() {
                    Some(Ok(message)) => batch.push(message),
                    _ => break,
                }
            }
            let records: Option<Vec<LogRecord>> = batch
                .iter()
                .map(|m| serde_json::from_slice(m.payload().unwrap_or_default()).ok())
                .collect();
            let batch_done = match &records {
                Some(records) if records.len() > 1 => match handler.handle_batch(records).await {
                    Some(Ok(())) => true,
                    Some(Err(error)) => {
                        tracing::debug!(error = %format!("{error:#}"), "batch failed; handling records one by one");
                        false
                    }
                    None => false,
                },
                _ => false,
            };
            let mut interrupted = false;
            for message in &batch {
                // Retries and parking per record when the batch as a whole did not go through.
                if !batch_done && !resolve(&*handler, &config, &db, message, &shutdown).await {
                    // Shut down mid-record: its offset stays unstored, so it is redelivered.
                    interrupted = true;
                    break;
                }
                if let Err(error) = consumer.store_offset_from_message(message) {
                    // The partition was revoked meanwhile; its new owner gets the record again.
                    tracing::warn!(%error, "could not store an offset");
                }
            }
            if interrupted {
                break;
            }
        }

        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => tracing::warn!(%error, "committing offsets on shutdown failed"),
        }
        tracing::info!("consumer stopped");
        Ok(())
    }
}

/// Handles or parks one message. False when shutdown interrupted it (the record stays pending).
async fn resolve(
    handler: &dyn LogHandler,
    config: &KafkaConfig,
    db: &Db,
    message: &BorrowedMessage<'_>,
    shutdown: &CancellationToken,
) -> bool {
    let payload = message.payload().unwrap_or_default();
    let record = match serde_json::from_slice::<LogRecord>(payload) {
        Ok(record) => record,
        Err(error) => {
            let key = message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default();
            let error = format!("not a LogRecord: {error}");
            return park_until_done(
                db,
                ParkedMessage {
                    consumer: handler.name(),
                    topic: message.topic(),
                    partition: message.partition(),
                    offset: message.offset(),
                    stream_id: &key,
                    sequence: -1,
                    error: &error,
                    payload: &String::from_utf8_lossy(payload),
                },
                shutdown,
            )
            .await;
        }
    };
    match handle_with_retry(handler, &record, config.retry, shutdown).await {
        Outcome::Handled => true,
        Outcome::Cancelled => false,
        Outcome::Failed(error) => {
            park_until_done(
                db,
                ParkedMessage {
                    consumer: handler.name(),
                    topic: message.topic(),
                    partition: message.partition(),
                    offset: message.offset(),
                    stream_id: &record.aggregate_id,
                    sequence: record.sequence,
                    error: &error,
                    payload: &String::from_utf8_lossy(payload),
                },
                shutdown,
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn waiting(committed: i64) -> Option<Vec<PartitionBacklog>> {
        Some(vec![PartitionBacklog {
            topic: "herald.publishing_job".into(),
            partition: 1,
            committed,
        }])
    }

    #[test]
    fn a_member_holding_nothing_while_records_wait_unconsumed_rejoins_after_the_stall_window() {
        let (mut watch, start) = (StallWatch::default(), Instant::now());
        assert!(!watch.observe(start, false, waiting(4)));
        assert!(!watch.observe(start + STALL_AFTER / 2, false, waiting(4)));
        assert!(watch.observe(start + STALL_AFTER, false, waiting(4)));
        // Rejoining starts a new watch.
        assert!(!watch.observe(start + STALL_AFTER * 2, false, waiting(4)));
    }

    #[test]
    fn an_idle_member_stays_while_others_consume_or_nothing_waits() {
        let (mut watch, start) = (StallWatch::default(), Instant::now());
        // Another member holds the partition and moves its offset.
        assert!(!watch.observe(start, false, waiting(4)));
        assert!(!watch.observe(start + STALL_AFTER, false, waiting(9)));
        assert!(!watch.observe(start + STALL_AFTER * 3 / 2, false, waiting(9)));
        // Nothing waits: more members than partitions is normal.
        assert!(!watch.observe(start + STALL_AFTER * 2, false, Some(vec![])));
        assert!(!watch.observe(start + STALL_AFTER * 4, false, Some(vec![])));
    }

    #[test]
    fn holding_a_partition_or_an_unread_backlog_decides_nothing() {
        let (mut watch, start) = (StallWatch::default(), Instant::now());
        assert!(!watch.observe(start, false, waiting(4)));
        assert!(!watch.observe(start + STALL_AFTER, true, Some(vec![])));
        assert!(!watch.observe(start + STALL_AFTER * 2, false, waiting(4)));
        assert!(!watch.observe(start + STALL_AFTER * 5 / 2, false, None));
        assert!(watch.observe(start + STALL_AFTER * 3, false, waiting(4)));
    }
}
