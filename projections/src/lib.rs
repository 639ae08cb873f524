//! Read models, each built by a projection from the event log. Every projection is idempotent —
//! it records the last sequence applied per stream in the same transaction as its change and
//! skips anything at or below it (ARCHITECTURE invariant 3) — and rebuildable from the events.
#![forbid(unsafe_code)]

pub mod analytics;
pub mod connections;
pub mod due_jobs;
mod handler;
pub mod jobs;

pub use handler::{ProjectionHandler, Rebuild};

use herald_domain::VersionedEvent;
use sqlx::{Any, AnyPool, Row, Transaction};

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
    /// Applies runs of events inside `tx`, each run one stream's next events in order, the runs
    /// in the order given: what a rebuild does with a page of the event store. The default
    /// applies them one by one; a projection that can fold each stream in memory and write the
    /// results with a few multi-row statements overrides it, which is what makes a replay fast.
    /// The result must equal applying the events one by one.
    async fn apply_runs(
        &self,
        tx: &mut Transaction<'static, Any>,
        runs: &[StreamRun<Self::Event>],
    ) -> anyhow::Result<()> {
        for run in runs {
            for (sequence, event) in &run.events {
                self.apply(tx, &run.stream_id, *sequence, event).await?;
            }
        }
        Ok(())
    }
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

/// One stream's next events in a rebuild: `(sequence, event)` in order.
#[derive(Debug)]
pub struct StreamRun<E> {
    pub stream_id: String,
    pub events: Vec<(i64, E)>,
}

/// Applies `runs` inside `tx` during a rebuild, moving each stream's position to its run's last
/// sequence with one multi-row statement. Events at or below a stream's stored position are
/// skipped first, as in [`apply_in`], so a run already applied changes nothing. Only for a
/// projection that was [`reset`] and is fed by one rebuilder in stream order (the live
/// consumers' positions are not locked here). Returns how many events were applied.
pub async fn rebuild_in<P: Projection>(
    tx: &mut Transaction<'static, Any>,
    projection: &P,
    mut runs: Vec<StreamRun<P::Event>>,
) -> anyhow::Result<usize> {
    let mut stored = std::collections::HashMap::new();
    for chunk in runs.chunks(rows_per_statement(tx, 1)) {
        let sql = format!(
            "SELECT stream_id, last_sequence FROM consumer_stream_positions WHERE consumer = $1 AND stream_id IN {}",
            values_list(chunk.len(), 1, 2)
        );
        let mut query = sqlx::query(&sql)
            .persistent(chunk.len() == 1)
            .bind(projection.name());
        for run in chunk {
            query = query.bind(&run.stream_id);
        }
        for row in query.fetch_all(&mut **tx).await? {
            stored.insert(
                row.try_get::<String, _>("stream_id")?,
                row.try_get::<i64, _>("last_sequence")?,
            );
        }
    }
    for run in &mut runs {
        if let Some(position) = stored.get(&run.stream_id) {
            run.events.retain(|(sequence, _)| sequence > position);
        }
    }
    runs.retain(|run| !run.events.is_empty());
    for chunk in runs.chunks(rows_per_statement(tx, 3)) {
        let sql = format!(
            "INSERT INTO consumer_stream_positions (consumer, stream_id, last_sequence) VALUES {}
             ON CONFLICT (consumer, stream_id) DO UPDATE SET last_sequence = excluded.last_sequence",
            values_list(3, chunk.len(), 1)
        );
        let mut query = sqlx::query(&sql).persistent(chunk.len() == 1);
        for run in chunk {
            let (last, _) = run.events.last().expect("empty runs were dropped");
            query = query
                .bind(projection.name())
                .bind(&run.stream_id)
                .bind(*last);
        }
        query.execute(&mut **tx).await?;
    }
    projection.apply_runs(tx, &runs).await?;
    Ok(runs.iter().map(|run| run.events.len()).sum())
}

/// `($n, $n+1), ($n+2, $n+3), …`: `rows` rows of `columns` placeholders numbered from `first`,
/// for a multi-row statement (`$n` placeholders are what both databases accept through `Any`).
/// Such statements are run unprepared (`persistent(false)`) unless they have one row: each row
/// count is another statement, and caching them all on every connection costs memory.
pub fn values_list(columns: usize, rows: usize, first: usize) -> String {
    (0..rows)
        .map(|row| {
            let cells: Vec<String> = (0..columns)
                .map(|column| format!("${}", first + row * columns + column))
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rows per multi-row statement of `columns` columns on the database of `tx`: up to 8,000
/// parameters on Postgres (fewer round trips), about 250 on SQLite, where more would not help:
/// sqlx's SQLite driver looks each parameter's name up in a list, so binding costs grow with
/// the square of the parameter count.
pub fn rows_per_statement(tx: &Transaction<'static, Any>, columns: usize) -> usize {
    let parameters = if tx.backend_name() == "PostgreSQL" {
        8_000
    } else {
        250
    };
    (parameters / columns).max(1)
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

#[cfg(test)]
mod tests {
    use super::values_list;

    #[test]
    fn values_list_numbers_rows_of_placeholders_from_the_first() {
        assert_eq!(values_list(2, 2, 1), "($1, $2), ($3, $4)");
        assert_eq!(values_list(3, 1, 2), "($2, $3, $4)");
        assert_eq!(values_list(1, 0, 1), "");
    }
}
