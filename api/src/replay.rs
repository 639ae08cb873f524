//! `herald replay`: rebuilds the read models from the event store, the source of truth.
use anyhow::Context;
use herald_infrastructure::log::{LogHandler, LogRecord};
use herald_projections::connections::ConnectionsProjection;
use herald_projections::{reset, Projection};
use sqlx::Row;

use crate::runtime::{Herald, ProjectionHandler};

/// Empties each projection and re-applies every event in per-stream order. Returns how many
/// events each projection applied.
pub async fn replay(herald: &Herald) -> anyhow::Result<Vec<(String, u64)>> {
    let (jobs, due) = herald.job_projections();
    let mut counts = Vec::new();
    counts.push(rebuild(herald, ProjectionHandler::new(jobs, herald.db.clone())).await?);
    counts.push(rebuild(herald, ProjectionHandler::new(due, herald.db.clone())).await?);
    counts.push(
        rebuild(
            herald,
            ProjectionHandler::new(ConnectionsProjection, herald.db.clone()),
        )
        .await?,
    );
    Ok(counts)
}

async fn rebuild<P: Projection>(
    herald: &Herald,
    handler: ProjectionHandler<P>,
) -> anyhow::Result<(String, u64)> {
    reset(&herald.db.any, handler.projection()).await?;
    let aggregate_type = handler.projection().aggregate_type();
    // Events are stored as JSON text in SQLite and json in Postgres; read both as text.
    let sql = if herald.db.is_postgres() {
        "SELECT aggregate_id, sequence, event_type, event_version, payload::text AS payload, metadata::text AS metadata
         FROM events WHERE aggregate_type = $1 ORDER BY aggregate_id, sequence"
    } else {
        "SELECT aggregate_id, sequence, event_type, event_version, payload, metadata
         FROM events WHERE aggregate_type = $1 ORDER BY aggregate_id, sequence"
    };
    let rows = sqlx::query(sql)
        .bind(aggregate_type)
        .fetch_all(&herald.db.any)
        .await
        .context("reading the event store")?;
    let mut applied = 0;
    for row in rows {
        let record = LogRecord {
            aggregate_type: aggregate_type.to_string(),
            aggregate_id: row.try_get("aggregate_id")?,
            sequence: row.try_get("sequence")?,
            event_type: row.try_get("event_type")?,
            event_version: row.try_get("event_version")?,
            payload: serde_json::from_str(&row.try_get::<String, _>("payload")?)?,
            metadata: serde_json::from_str(&row.try_get::<String, _>("metadata")?)?,
        };
        if handler.apply(&record).await? {
            applied += 1;
        }
    }
    Ok((handler.name().to_string(), applied))
}
