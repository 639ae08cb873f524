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
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
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
            .set("fetch.error.backoff.ms", "50");
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
        let consumer: StreamConsumer = config
            .consumer_config(&config.group_id(handler.name()))
            .create()
            .context("creating the Kafka consumer")?;
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topic_refs)
            .context("subscribing to the handler's topics")?;
        tracing::info!(?topics, "consumer started");

        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => break,
                received = consumer.recv() => received,
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
