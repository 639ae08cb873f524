//! Reading a test's Kafka topics from the beginning, outside Herald's own consumers.
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

/// One message as it sits on the topic.
#[derive(Debug, Clone)]
pub struct KafkaMessage {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
}

impl KafkaMessage {
    pub fn key_str(&self) -> String {
        String::from_utf8_lossy(self.key.as_deref().unwrap_or_default()).into_owned()
    }

    /// The value decoded as JSON (Herald's `LogRecord`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.value).unwrap_or_else(|e| {
            panic!(
                "message {}/{}@{} is not JSON ({e}): {}",
                self.topic,
                self.partition,
                self.offset,
                String::from_utf8_lossy(&self.value)
            )
        })
    }
}

/// Every message currently on `topic` (up to each partition's high watermark), read with a
/// fresh consumer group from the beginning; in partition, then offset order.
pub async fn read_topic(brokers: &str, topic: &str) -> Vec<KafkaMessage> {
    let brokers = brokers.to_string();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || read_topic_blocking(&brokers, &topic))
        .await
        .expect("the Kafka reader panicked")
}

/// Re-reads `topic` until `done` accepts its messages; returns them. Panics after `within`.
pub async fn read_topic_until(
    brokers: &str,
    topic: &str,
    within: Duration,
    done: impl Fn(&[KafkaMessage]) -> bool,
) -> Vec<KafkaMessage> {
    let deadline = Instant::now() + within;
    loop {
        let messages = read_topic(brokers, topic).await;
        if done(&messages) {
            return messages;
        }
        if Instant::now() >= deadline {
            panic!(
                "{topic} did not get the expected messages within {within:?}; it holds {}: {:?}",
                messages.len(),
                messages
                    .iter()
                    .map(|m| String::from_utf8_lossy(&m.value).into_owned())
                    .collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn read_topic_blocking(brokers: &str, topic: &str) -> Vec<KafkaMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("herald-test-reader-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("create a Kafka consumer");
    let timeout = Duration::from_secs(10);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .expect("fetch topic metadata");
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    assert!(!partitions.is_empty(), "topic {topic} has no partitions");
    let mut assignment = TopicPartitionList::new();
    let mut remaining = Vec::new();
    for &partition in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .expect("fetch watermarks");
        if high > low {
            remaining.push((partition, high));
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(low))
                .unwrap();
        }
    }
    let mut messages = Vec::new();
    if remaining.is_empty() {
        return messages;
    }
    consumer.assign(&assignment).expect("assign partitions");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !remaining.is_empty() {
        assert!(
            Instant::now() < deadline,
            "reading {topic}: partitions {remaining:?} not read to their end"
        );
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = match result {
            Ok(message) => message,
            Err(error) => {
                eprintln!("Kafka reader: {error}");
                continue;
            }
        };
        let partition = message.partition();
        let offset = message.offset();
        messages.push(KafkaMessage {
            topic: message.topic().to_string(),
            partition,
            offset,
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        });
        remaining.retain(|(p, high)| !(*p == partition && offset + 1 >= *high));
    }
    messages.sort_by_key(|m| (m.partition, m.offset));
    messages
}
