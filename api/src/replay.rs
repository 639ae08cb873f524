//! `herald replay`: rebuilds the read models from the event store, the source of truth.
use std::time::{Duration, Instant};

use herald_infrastructure::db::Db;
use herald_infrastructure::store::stored_events_page;
use herald_projections::connections::ConnectionsProjection;
use herald_projections::{ProjectionHandler, Rebuild};
use tokio::sync::mpsc;

use crate::runtime::Herald;

/// Events read and applied per transaction. Large enough that commits are rare, small enough
/// that memory stays flat (a page of events is a few megabytes).
pub const PAGE: i64 = 2_000;

/// What a replay did.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayReport {
    /// Events each projection applied, by projection name.
    pub applied: Vec<(String, u64)>,
    /// Stored events read (each once, whatever the number of projections fed from them).
    pub events_read: u64,
    pub elapsed: Duration,
}

/// Empties each projection and re-applies every event in per-stream order, through the same
/// handler (upcasting included) the live consumers use. Events are streamed page by page (one
/// reader ahead of the writers) and each page is applied in one transaction per projection,
/// each stream's run folded by the projection where it can (`Projection::apply_stream`).
pub async fn replay(herald: &Herald) -> anyhow::Result<ReplayReport> {
    replay_in_pages(herald, PAGE).await
}

/// [`replay`] reading and applying `page` events at a time.
pub async fn replay_in_pages(herald: &Herald, page: i64) -> anyhow::Result<ReplayReport> {
    let started = Instant::now();
    let (jobs, due, analytics) = herald.job_projections();
    let pool = &herald.db.any;
    let job_handlers: [Box<dyn Rebuild>; 3] = [
        Box::new(ProjectionHandler::new(jobs, pool.clone())),
        Box::new(ProjectionHandler::new(due, pool.clone())),
        Box::new(ProjectionHandler::new(analytics, pool.clone())),
    ];
    let (job_events, job_counts) = rebuild(&herald.db, &job_handlers, page).await?;
    let connection_handlers: [Box<dyn Rebuild>; 1] = [Box::new(ProjectionHandler::new(
        ConnectionsProjection,
        pool.clone(),
    ))];
    let (connection_events, connection_counts) =
        rebuild(&herald.db, &connection_handlers, page).await?;
    Ok(ReplayReport {
        applied: job_counts.into_iter().chain(connection_counts).collect(),
        events_read: job_events + connection_events,
        elapsed: started.elapsed(),
    })
}

/// Resets `handlers` (projections of one aggregate type) and feeds them every stored event of
/// that type, read once. Returns the events read and each handler's applied count.
async fn rebuild(
    db: &Db,
    handlers: &[Box<dyn Rebuild>],
    page_size: i64,
) -> anyhow::Result<(u64, Vec<(String, u64)>)> {
    let Some(aggregate_type) = handlers.first().map(|h| h.aggregate_type()) else {
        return Ok((0, Vec::new()));
    };
    anyhow::ensure!(
        handlers
            .iter()
            .all(|h| h.aggregate_type() == aggregate_type),
        "one rebuild reads one aggregate type"
    );
    for handler in handlers {
        handler.reset().await?;
    }
    // The next page is read while the current one is applied.
    let (pages, mut next_page) = mpsc::channel(1);
    let reader = tokio::spawn({
        let db = db.clone();
        async move {
            let mut after = (String::new(), -1);
            loop {
                let page =
                    stored_events_page(&db, aggregate_type, (&after.0, after.1), page_size).await?;
                let Some(last) = page.last() else {
                    return anyhow::Ok(());
                };
                after = (last.aggregate_id.clone(), last.sequence as i64);
                let full = page.len() as i64 == page_size;
                if pages.send(page).await.is_err() || !full {
                    return Ok(());
                }
            }
        }
    });
    let mut read = 0;
    let mut applied = vec![0; handlers.len()];
    while let Some(page) = next_page.recv().await {
        read += page.len() as u64;
        // Postgres writes each projection's transaction on its own connection at once; SQLite
        // has one writer, so its projections take turns.
        let counts = if db.is_postgres() {
            futures::future::try_join_all(handlers.iter().map(|h| h.rebuild_batch(&page))).await?
        } else {
            let mut counts = Vec::with_capacity(handlers.len());
            for handler in handlers {
                counts.push(handler.rebuild_batch(&page).await?);
            }
            counts
        };
        for (total, count) in applied.iter_mut().zip(counts) {
            *total += count;
        }
    }
    reader.await??;
    let counts = handlers
        .iter()
        .zip(applied)
        .map(|(handler, count)| (handler.name().to_string(), count))
        .collect();
    Ok((read, counts))
}

/// How fast the database hands back every stored event when nothing is done with them: rows
/// per second of a plain streamed scan of the event table, the ceiling a replay is measured
/// against (`herald replay --measure`).
pub async fn raw_scan_rate(db: &Db) -> anyhow::Result<(u64, f64)> {
    use futures::TryStreamExt;
    let started = Instant::now();
    let sql = if db.is_postgres() {
        "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload::text AS payload, metadata::text AS metadata FROM events"
    } else {
        "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata FROM events"
    };
    let mut rows = sqlx::query(sql).fetch(&db.any);
    let mut count = 0u64;
    while rows.try_next().await?.is_some() {
        count += 1;
    }
    Ok((count, count as f64 / started.elapsed().as_secs_f64()))
}
