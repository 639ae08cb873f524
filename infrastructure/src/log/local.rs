//! The embedded default's event log: the SQLite outbox itself, read in id order.
//!
//! SQLite has one writer at a time, so outbox ids follow commit order and a consumer's position
//! can be one number: the last outbox id it resolved (handled, or parked after repeated
//! failures), kept in `log_consumer_offsets`. A consumer handles records one at a time and
//! stores its position after each, so it never moves past an unresolved record; after a crash it
//! sees at most the record it was working on again. Postgres outbox ids do not follow commit
//! order (sequences are allocated before commit), so this log refuses a Postgres database.
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::SqlitePool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::consume::{handle_with_retry, park_until_done, Outcome, ParkedMessage, RetryPolicy};
use super::{topic_for, LogHandler, LogRecord};
use crate::db::{Db, Engine};

/// The local log: the database plus a wake-up signal from the command side.
#[derive(Debug, Clone)]
pub struct LocalLog {
    db: Db,
    notify: Arc<Notify>,
    retry: RetryPolicy,
    poll_interval: Duration,
    batch_size: i64,
}

impl LocalLog {
    /// The log over `db`'s outbox: poll every 200 ms, batches of 500, the default retry policy.
    pub fn new(db: Db) -> Self {
        LocalLog {
            db,
            notify: Arc::new(Notify::new()),
            retry: RetryPolicy::default(),
            poll_interval: Duration::from_millis(200),
            batch_size: 500,
        }
    }

    /// Replaces the handler retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Replaces the poll interval (the fallback when nobody signals a commit).
    pub fn with_poll_interval(mut self, poll_interval: Duration) -> Self {
        self.poll_interval = poll_interval;
        self
    }

    /// The wake-up signal. After committing events, call `notify_waiters()` on it (or
    /// [`LocalLog::notify_committed`]) so every consumer reads at once instead of at its next poll.
    pub fn notifier(&self) -> Arc<Notify> {
        Arc::clone(&self.notify)
    }

    /// Wakes every consumer of this log; call after committing events.
    pub fn notify_committed(&self) {
        self.notify.notify_waiters();
    }

    /// The database this log reads.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The last outbox id `consumer` resolved (0 before its first record).
    pub async fn position(&self, consumer: &str) -> anyhow::Result<i64> {
        let position: Option<i64> =
            sqlx::query_scalar("SELECT position FROM log_consumer_offsets WHERE consumer = $1")
                .bind(consumer)
                .fetch_optional(&self.db.any)
                .await
                .context("reading the consumer position")?;
        Ok(position.unwrap_or(0))
    }

    /// Deletes outbox rows that every consumer has moved past and that are older than
    /// `retention`; returns how many. The events table keeps everything, so a consumer added
    /// later rebuilds from there (`herald replay`), not from the log.
    pub async fn prune(&self, retention: Duration) -> anyhow::Result<u64> {
        let cutoff = chrono::Utc::now() - chrono::Duration::from_std(retention)?;
        let deleted = sqlx::query(
            "DELETE FROM outbox WHERE id <= (SELECT MIN(position) FROM log_consumer_offsets) AND recorded_at < $1",
        )
        .bind(cutoff.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .execute(&self.db.any)
        .await
        .context("pruning the local log")?
        .rows_affected();
        Ok(deleted)
    }

    /// Prunes every `every` until shutdown.
    pub async fn run_pruning(
        self,
        retention: Duration,
        every: Duration,
        shutdown: CancellationToken,
    ) {
        loop {
            match self.prune(retention).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "pruned the local log"),
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "could not prune the local log")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    async fn store_position(&self, consumer: &str, position: i64) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO log_consumer_offsets (consumer, position) VALUES ($1, $2) \
             ON CONFLICT (consumer) DO UPDATE SET position = excluded.position",
        )
        .bind(consumer)
        .bind(position)
        .execute(&self.db.any)
        .await
        .context("storing the consumer position")?;
        Ok(())
    }

    fn sqlite(&self) -> anyhow::Result<&SqlitePool> {
        match &self.db.engine {
            Engine::Sqlite(pool) => Ok(pool),
            Engine::Postgres(_) => anyhow::bail!(
                "the local event log needs the SQLite outbox; with Postgres configure Kafka"
            ),
        }
    }
}

/// One outbox row as the local log reads it.
#[derive(Debug, sqlx::FromRow)]
struct LocalRow {
    id: i64,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: String,
    metadata: String,
}

impl LocalRow {
    fn record(&self) -> anyhow::Result<LogRecord> {
        Ok(LogRecord {
            aggregate_type: self.aggregate_type.clone(),
            aggregate_id: self.aggregate_id.clone(),
            sequence: self.sequence,
            event_type: self.event_type.clone(),
            event_version: self.event_version.clone(),
            payload: serde_json::from_str(&self.payload).context("payload is not JSON")?,
            metadata: serde_json::from_str(&self.metadata).context("metadata is not JSON")?,
        })
    }
}

/// Runs one [`LogHandler`] over the local log.
pub struct LocalConsumerRunner;

impl LocalConsumerRunner {
    /// Consumes the handler's aggregate types from its stored position until `shutdown`.
    ///
    /// Per record, in outbox id order: call the handler (retried with backoff per the log's
    /// policy); on success store the position. A record that keeps failing (or cannot be read) is
    /// parked in `parked_messages` with topic = [`topic_for`] its aggregate type, partition 0 and
    /// offset = its outbox id, and the position moves past it. Returns an error only if the
    /// database is not SQLite or the starting position cannot be read.
    #[tracing::instrument(skip_all, fields(consumer = handler.name()))]
    pub async fn run(
        handler: Arc<dyn LogHandler>,
        log: LocalLog,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let pool = log.sqlite()?.clone();
        let consumer = handler.name().to_string();
        let mut position = log.position(&consumer).await?;
        let types = handler.aggregate_types();
        if types.is_empty() {
            shutdown.cancelled().await;
            return Ok(());
        }
        let placeholders: Vec<String> = (0..types.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT id, aggregate_type, aggregate_id, sequence, event_type, event_version, \
                    payload, metadata \
             FROM outbox WHERE id > $1 AND aggregate_type IN ({}) ORDER BY id LIMIT {}",
            placeholders.join(", "),
            log.batch_size
        );
        tracing::info!(position, "local consumer started");
        let lag_sql = format!(
            "SELECT COUNT(*) FROM outbox WHERE id > $1 AND aggregate_type IN ({})",
            placeholders.join(", ")
        );
        let mut lag_measured = std::time::Instant::now() - super::LAG_MEASURE_EVERY;

        'consume: while !shutdown.is_cancelled() {
            // Registered before reading, so a commit signalled during the read is not missed.
            let notified = log.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();

            let mut query = sqlx::query_as::<_, LocalRow>(&sql).bind(position);
            for aggregate_type in types {
                query = query.bind(*aggregate_type);
            }
            let rows = match query.fetch_all(&pool).await {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::warn!(%error, "reading the local log failed");
                    Vec::new()
                }
            };
            let full_batch = rows.len() as i64 >= log.batch_size;
            // The whole batch in one go when it decodes and applies; otherwise record by
            // record with retries and parking.
            let records: Option<Vec<LogRecord>> =
                rows.iter().map(|row| row.record().ok()).collect();
            let batch_done = match &records {
                Some(records) if records.len() > 1 => {
                    matches!(handler.handle_batch(records).await, Some(Ok(())))
                }
                _ => false,
            };
            if batch_done {
                if let Some(last) = rows.last() {
                    position = last.id;
                }
            } else {
                for row in &rows {
                    if !resolve(&*handler, &log, row, &shutdown).await {
                        // Shut down mid-record: the position stays before it.
                        break 'consume;
                    }
                    position = row.id;
                }
            }
            if !rows.is_empty() {
                if let Err(error) = log.store_position(&consumer, position).await {
                    // Only costs a redelivery after a restart; the next store covers it.
                    tracing::warn!(error = %format!("{error:#}"), "could not store the position");
                }
            }
            if !full_batch {
                super::record_consumer_lag(&consumer, 0);
            } else if lag_measured.elapsed() >= super::LAG_MEASURE_EVERY {
                // Behind by at least a batch: count how far, now and then.
                lag_measured = std::time::Instant::now();
                let mut count = sqlx::query_scalar::<_, i64>(&lag_sql).bind(position);
                for aggregate_type in types {
                    count = count.bind(*aggregate_type);
                }
                if let Ok(lag) = count.fetch_one(&pool).await {
                    super::record_consumer_lag(&consumer, lag);
                }
            }
            if full_batch {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = &mut notified => {}
                _ = tokio::time::sleep(log.poll_interval) => {}
            }
        }
        tracing::info!(position, "local consumer stopped");
        Ok(())
    }
}

/// Handles or parks one row. False when shutdown interrupted it.
async fn resolve(
    handler: &dyn LogHandler,
    log: &LocalLog,
    row: &LocalRow,
    shutdown: &CancellationToken,
) -> bool {
    let topic = topic_for(&row.aggregate_type);
    // Parked payload: the record as Kafka would carry it, or the raw row if it cannot be read.
    let (error, payload) = match row.record() {
        Ok(record) => match handle_with_retry(handler, &record, log.retry, shutdown).await {
            Outcome::Handled => return true,
            Outcome::Cancelled => return false,
            Outcome::Failed(error) => (error, serde_json::to_string(&record).unwrap_or_default()),
        },
        Err(error) => (
            format!("not a LogRecord: {error:#}"),
            serde_json::json!({
                "aggregate_type": row.aggregate_type,
                "aggregate_id": row.aggregate_id,
                "sequence": row.sequence,
                "event_type": row.event_type,
                "event_version": row.event_version,
                "payload": row.payload,
                "metadata": row.metadata,
            })
            .to_string(),
        ),
    };
    park_until_done(
        &log.db,
        ParkedMessage {
            consumer: handler.name(),
            topic: &topic,
            partition: 0,
            offset: row.id,
            stream_id: &row.aggregate_id,
            sequence: row.sequence,
            error: &error,
            payload: &payload,
        },
        shutdown,
    )
    .await
}
