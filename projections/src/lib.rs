//! Read models, each built by a projection from the event log. Every projection is idempotent —
//! it records the last sequence applied per stream in the same transaction as its change and
//! skips anything at or below it (ARCHITECTURE invariant 3) — and rebuildable from the events.
#![forbid(unsafe_code)]

pub mod connections;
pub mod due_jobs;
mod handler;
pub mod jobs;

pub use handler::ProjectionHandler;

use herald_domain::VersionedEvent;
use sqlx::{Any, AnyPool, Transaction};

/// A read model fed by one aggregate type's events.
#[async_trait::async_trait]
pub trait Projection: Send + Sync + 'static {
    /// Its aggregate's events, read in their latest shape (older stored versions are upcast).
    type Event: VersionedEvent;

    /// Consumer name: key of its stored positions (and Kafka consumer group).
    fn name(&self) -> &'static str;
    /// The aggregate type whose events it reads.
    fn aggregate_type(&self) -> &'static str;
    /// Tables it owns; a replay empties them first.
    fn tables(&self) -> &'static [&'static str];
    /// Applies one event inside `tx`.
    async fn apply(
        &self,
        tx: &mut Transaction<'static, Any>,
        aggregate_id: &str,
        sequence: i64,
        event: &Self::Event,
    ) -> anyhow::Result<()>;
    /// Runs after a committed change (e.g. to wake a dispatcher).
    fn after_commit(&self, _event: &Self::Event) {}
}

/// Applies `event` unless this projection has already applied `sequence` of `aggregate_id`.
/// Returns whether it was applied.
pub async fn apply_once<P: Projection>(
    pool: &AnyPool,
    projection: &P,
    aggregate_id: &str,
    sequence: i64,
    event: &P::Event,
) -> anyhow::Result<bool> {
    let mut tx = pool.begin().await?;
    let applied = apply_in(&mut tx, projection, aggregate_id, sequence, event).await?;
    tx.commit().await?;
    if applied {
        projection.after_commit(event);
    }
    Ok(applied)
}

/// Applies `event` inside `tx` unless already applied, moving the stream's position in the same
/// transaction. The caller commits, then calls `after_commit` for what was applied — this lets
/// a consumer apply a whole batch in one transaction.
pub async fn apply_in<P: Projection>(
    tx: &mut Transaction<'static, Any>,
    projection: &P,
    aggregate_id: &str,
    sequence: i64,
    event: &P::Event,
) -> anyhow::Result<bool> {
    // Moving the position first also locks the row (Postgres), so two consumers racing on the
    // same stream serialize here and the loser sees nothing to do.
    let advanced = sqlx::query(
        "INSERT INTO consumer_stream_positions (consumer, stream_id, last_sequence) VALUES ($1, $2, $3)
         ON CONFLICT (consumer, stream_id) DO UPDATE SET last_sequence = excluded.last_sequence
         WHERE consumer_stream_positions.last_sequence < excluded.last_sequence",
    )
    .bind(projection.name())
    .bind(aggregate_id)
    .bind(sequence)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if advanced == 0 {
        return Ok(false);
    }
    projection.apply(tx, aggregate_id, sequence, event).await?;
    Ok(true)
}

/// Empties a projection's tables and positions so a replay can rebuild it.
pub async fn reset<P: Projection>(pool: &AnyPool, projection: &P) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    for table in projection.tables() {
        sqlx::query(&format!("DELETE FROM {table}"))
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM consumer_stream_positions WHERE consumer = $1")
        .bind(projection.name())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) fn millis(at: chrono::DateTime<chrono::Utc>) -> i64 {
    at.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
