//! What both consumer runners share: the retry-then-park policy for one record, and parking.
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::{LogHandler, LogRecord};
use crate::db::{millis, Db};

/// How often a handler is tried on one record before the record is parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries, including the first (at least 1).
    pub attempts: u32,
    /// Wait before the second try; doubled for each further try.
    pub initial_backoff: Duration,
    /// Upper bound of one wait.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed try number `try_number` (1-based).
    pub fn backoff(&self, try_number: u32) -> Duration {
        let factor = 2u32.saturating_pow(try_number.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// How one record ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The handler succeeded: move past the record.
    Handled,
    /// Every try failed; the last error. Park it, then move past it.
    Failed(String),
    /// Shutdown came during the retries: do not move past the record, it will be seen again.
    Cancelled,
}

/// Records parked by any runner in this process since start: a counter for health checks and
/// metrics until there is a metrics registry.
static PARKED_TOTAL: AtomicU64 = AtomicU64::new(0);

/// How many records this process has parked since it started.
pub fn parked_total() -> u64 {
    PARKED_TOTAL.load(Ordering::Relaxed)
}

/// Runs the handler on `record`, retrying with exponential backoff.
pub(crate) async fn handle_with_retry(
    handler: &dyn LogHandler,
    record: &LogRecord,
    policy: RetryPolicy,
    shutdown: &CancellationToken,
) -> Outcome {
    let attempts = policy.attempts.max(1);
    let mut last_error = String::new();
    for try_number in 1..=attempts {
        match handler.handle(record).await {
            Ok(()) => return Outcome::Handled,
            Err(error) => {
                last_error = format!("{error:#}");
                tracing::debug!(
                    consumer = handler.name(),
                    aggregate_id = %record.aggregate_id,
                    sequence = record.sequence,
                    try_number,
                    error = %last_error,
                    "handler failed"
                );
            }
        }
        if try_number < attempts {
            tokio::select! {
                _ = shutdown.cancelled() => return Outcome::Cancelled,
                _ = tokio::time::sleep(policy.backoff(try_number)) => {}
            }
        }
    }
    Outcome::Failed(last_error)
}

/// Where a parked message came from.
#[derive(Clone, Copy)]
pub(crate) struct ParkedMessage<'a> {
    pub consumer: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// Aggregate id, or empty when the message could not be read at all.
    pub stream_id: &'a str,
    /// Aggregate sequence, or -1 when the message could not be read at all.
    pub sequence: i64,
    pub error: &'a str,
    pub payload: &'a str,
}

/// Keeps a message the consumer gave up on, so nothing is skipped silently.
pub(crate) async fn park(db: &Db, message: ParkedMessage<'_>) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO parked_messages \
         (consumer, topic, partition, \"offset\", stream_id, sequence, error, payload, parked_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(message.consumer)
    .bind(message.topic)
    .bind(message.partition)
    .bind(message.offset)
    .bind(message.stream_id)
    .bind(message.sequence)
    .bind(message.error)
    .bind(message.payload)
    .bind(millis(chrono::Utc::now()))
    .execute(&db.any)
    .await
    .context("inserting into parked_messages")?;
    PARKED_TOTAL.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(
        consumer = message.consumer,
        topic = message.topic,
        partition = message.partition,
        offset = message.offset,
        stream_id = message.stream_id,
        sequence = message.sequence,
        error = message.error,
        parked_total = parked_total(),
        "parked a message after repeated failures"
    );
    Ok(())
}

/// Parks with retries: the consumer must not move past a record it failed to park, so it keeps
/// trying until parking works or shutdown (then the record is redelivered).
pub(crate) async fn park_until_done(
    db: &Db,
    message: ParkedMessage<'_>,
    shutdown: &CancellationToken,
) -> bool {
    let mut wait = Duration::from_millis(200);
    loop {
        match park(db, message).await {
            Ok(()) => return true,
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "could not park a message; retrying");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
        };
        assert_eq!(policy.backoff(1), Duration::from_millis(100));
        assert_eq!(policy.backoff(2), Duration::from_millis(200));
        assert_eq!(policy.backoff(3), Duration::from_millis(350));
        assert_eq!(policy.backoff(40), Duration::from_millis(350));
    }
}
