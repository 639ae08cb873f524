//! `herald replay`: rebuilds the read models from the event store, the source of truth.
use herald_infrastructure::store::stored_events;
use herald_projections::connections::ConnectionsProjection;
use herald_projections::{reset, Projection, ProjectionHandler};

use crate::runtime::Herald;

/// Empties each projection and re-applies every event in per-stream order, through the same
/// handler (upcasting included) the live consumers use. Returns how many events each projection
/// applied.
pub async fn replay(herald: &Herald) -> anyhow::Result<Vec<(String, u64)>> {
    let (jobs, due) = herald.job_projections();
    let pool = &herald.db.any;
    Ok(vec![
        rebuild(herald, ProjectionHandler::new(jobs, pool.clone())).await?,
        rebuild(herald, ProjectionHandler::new(due, pool.clone())).await?,
        rebuild(
            herald,
            ProjectionHandler::new(ConnectionsProjection, pool.clone()),
        )
        .await?,
    ])
}

async fn rebuild<P: Projection>(
    herald: &Herald,
    handler: ProjectionHandler<P>,
) -> anyhow::Result<(String, u64)> {
    let projection = handler.projection();
    reset(&herald.db.any, projection).await?;
    let mut applied = 0;
    for event in stored_events(&herald.db, projection.aggregate_type()).await? {
        if handler.apply(&event).await? {
            applied += 1;
        }
    }
    Ok((projection.name().to_string(), applied))
}
