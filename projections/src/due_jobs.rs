//! When each job is next due: the durable schedule the publisher's workers claim from (see
//! `herald_infrastructure::scheduler`). Only due times are written here; leases belong to the
//! workers and are left untouched.
use std::collections::BTreeMap;
use std::sync::Arc;

use herald_domain::publishing_job::PublishingJobEvent;
use sqlx::{Any, Row, Transaction};

use crate::{millis, rows_per_statement, values_list, Projection, StreamRun};

/// Writes `job_schedule` from job events.
pub struct DueJobsProjection {
    /// Called after a due time is written, to wake the dispatcher at once.
    on_due: Arc<dyn Fn() + Send + Sync>,
}

impl DueJobsProjection {
    pub fn new(on_due: Arc<dyn Fn() + Send + Sync>) -> Self {
        Self { on_due }
    }
}

#[async_trait::async_trait]
impl Projection for DueJobsProjection {
    type Event = PublishingJobEvent;

    fn name(&self) -> &'static str {
        "scheduler"
    }

    fn aggregate_type(&self) -> &'static str {
        "PublishingJob"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["job_schedule", "schedule_user_load"]
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'static, Any>,
        aggregate_id: &str,
        _sequence: i64,
        event: &PublishingJobEvent,
    ) -> anyhow::Result<()> {
        use PublishingJobEvent as E;
        if let E::JobScheduled {
            user_id,
            publish_at,
            ..
        } = event
        {
            // Its rank: how many of the user's jobs are in the schedule before it.
            let pending: i64 = sqlx::query_scalar(
                "INSERT INTO schedule_user_load (user_id, pending) VALUES ($1, 1)
                 ON CONFLICT (user_id) DO UPDATE SET pending = schedule_user_load.pending + 1
                 RETURNING pending",
            )
            .bind(user_id.as_str())
            .fetch_one(&mut **tx)
            .await?;
            sqlx::query(
                "INSERT INTO job_schedule (job_id, due_at_ms, lease_owner, lease_until_ms, user_id, user_rank)
                 VALUES ($1, $2, NULL, 0, $3, $4)
                 ON CONFLICT (job_id) DO UPDATE SET due_at_ms = excluded.due_at_ms",
            )
            .bind(aggregate_id)
            .bind(millis(*publish_at))
            .bind(user_id.as_str())
            .bind(pending - 1)
            .execute(&mut **tx)
            .await?;
            return Ok(());
        }
        let due = match event {
            E::JobScheduled { .. } => None,
            E::RetryScheduled { retry_at, .. } => Some(*retry_at),
            E::Rescheduled { publish_at, .. } => Some(*publish_at),
            E::RetryRequested { at, .. } => Some(*at),
            E::Published { .. } | E::Failed { .. } | E::Cancelled { .. } => {
                let owner: Option<String> = sqlx::query_scalar(
                    "DELETE FROM job_schedule WHERE job_id = $1 RETURNING user_id",
                )
                .bind(aggregate_id)
                .fetch_optional(&mut **tx)
                .await?;
                // Rows a user's retry brought back carry no user (the event names none) and
                // never counted.
                if let Some(owner) = owner.filter(|owner| !owner.is_empty()) {
                    sqlx::query(
                        "UPDATE schedule_user_load SET pending = pending - 1 WHERE user_id = $1",
                    )
                    .bind(owner)
                    .execute(&mut **tx)
                    .await?;
                }
                return Ok(());
            }
            _ => None,
        };
        if let Some(due) = due {
            sqlx::query(
                "INSERT INTO job_schedule (job_id, due_at_ms, lease_owner, lease_until_ms) VALUES ($1, $2, NULL, 0)
                 ON CONFLICT (job_id) DO UPDATE SET due_at_ms = excluded.due_at_ms",
            )
            .bind(aggregate_id)
            .bind(millis(due))
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// A stream from its `JobScheduled` (what a rebuild sees) nets out in memory: the row it
    /// leaves, if any, and one move of its user's load — by one if the job is still waiting,
    /// by nothing if it ended — so ranks come out as event by event. Consecutive such streams
    /// are written together; a run that starts later in its stream is applied event by event.
    async fn apply_runs(
        &self,
        tx: &mut Transaction<'static, Any>,
        runs: &[StreamRun<PublishingJobEvent>],
    ) -> anyhow::Result<()> {
        let mut folded = Vec::new();
        for run in runs {
            match fold(run) {
                Some(stream) => folded.push(stream),
                None => {
                    write_folded(tx, &std::mem::take(&mut folded)).await?;
                    for (sequence, event) in &run.events {
                        self.apply(tx, &run.stream_id, *sequence, event).await?;
                    }
                }
            }
        }
        write_folded(tx, &folded).await
    }

    fn after_commit(&self, event: &PublishingJobEvent) {
        if matches!(
            event,
            PublishingJobEvent::JobScheduled { .. }
                | PublishingJobEvent::RetryScheduled { .. }
                | PublishingJobEvent::Rescheduled { .. }
                | PublishingJobEvent::RetryRequested { .. }
        ) {
            (self.on_due)();
        }
    }
}

/// A job's whole stream netted out: its user, and the schedule row it leaves.
struct FoldedStream<'a> {
    job_id: &'a str,
    user_id: &'a str,
    /// The row's due time, and whether it is the scheduled row that counts in the user's load
    /// (a row a user's retry brings back after the job ended carries no user).
    row: Option<(i64, bool)>,
}

/// Nets out a run that starts with the job's `JobScheduled`; `None` for any other run.
fn fold(run: &StreamRun<PublishingJobEvent>) -> Option<FoldedStream<'_>> {
    use PublishingJobEvent as E;
    let Some((_, E::JobScheduled { user_id, .. })) = run.events.first() else {
        return None;
    };
    let mut row: Option<(i64, bool)> = None;
    for (_, event) in &run.events {
        match event {
            E::JobScheduled { publish_at, .. } => row = Some((millis(*publish_at), true)),
            E::RetryScheduled { retry_at: due, .. }
            | E::Rescheduled {
                publish_at: due, ..
            }
            | E::RetryRequested { at: due, .. } => {
                row = Some((millis(*due), row.is_some_and(|(_, counted)| counted)));
            }
            E::Published { .. } | E::Failed { .. } | E::Cancelled { .. } => row = None,
            _ => {}
        }
    }
    Some(FoldedStream {
        job_id: &run.stream_id,
        user_id: user_id.as_str(),
        row,
    })
}

/// Writes folded streams: every user's load once (a user seen only in ended jobs keeps a row,
/// as event by event), ranks in stream order from the stored load, and the rows left.
async fn write_folded(
    tx: &mut Transaction<'static, Any>,
    streams: &[FoldedStream<'_>],
) -> anyhow::Result<()> {
    if streams.is_empty() {
        return Ok(());
    }
    let mut load: BTreeMap<&str, i64> = streams.iter().map(|s| (s.user_id, 0)).collect();
    let users: Vec<&str> = load.keys().copied().collect();
    for chunk in users.chunks(rows_per_statement(tx, 1)) {
        let sql = format!(
            "SELECT user_id, pending FROM schedule_user_load WHERE user_id IN {}",
            values_list(chunk.len(), 1, 1)
        );
        let mut query = sqlx::query(&sql).persistent(chunk.len() == 1);
        for user in chunk {
            query = query.bind(*user);
        }
        for row in query.fetch_all(&mut **tx).await? {
            let user: String = row.try_get("user_id")?;
            if let Some(pending) = load.get_mut(user.as_str()) {
                *pending = row.try_get("pending")?;
            }
        }
    }
    // (job, due, user, rank) of each row left.
    let mut rows: Vec<(&str, i64, &str, i64)> = Vec::new();
    for stream in streams {
        match stream.row {
            Some((due, true)) => {
                let pending = load.get_mut(stream.user_id).expect("every user was loaded");
                rows.push((stream.job_id, due, stream.user_id, *pending));
                *pending += 1;
            }
            Some((due, false)) => rows.push((stream.job_id, due, "", 0)),
            None => {}
        }
    }
    let loads: Vec<(&str, i64)> = load.into_iter().collect();
    for chunk in loads.chunks(rows_per_statement(tx, 2)) {
        let sql = format!(
            "INSERT INTO schedule_user_load (user_id, pending) VALUES {}
             ON CONFLICT (user_id) DO UPDATE SET pending = excluded.pending",
            values_list(2, chunk.len(), 1)
        );
        let mut query = sqlx::query(&sql).persistent(chunk.len() == 1);
        for (user, pending) in chunk {
            query = query.bind(*user).bind(*pending);
        }
        query.execute(&mut **tx).await?;
    }
    for chunk in rows.chunks(rows_per_statement(tx, 6)) {
        let sql = format!(
            "INSERT INTO job_schedule (job_id, due_at_ms, lease_owner, lease_until_ms, user_id, user_rank) VALUES {}",
            values_list(6, chunk.len(), 1)
        );
        let mut query = sqlx::query(&sql).persistent(chunk.len() == 1);
        for (job, due, user, rank) in chunk {
            query = query
                .bind(*job)
                .bind(*due)
                .bind(None::<String>)
                .bind(0i64)
                .bind(*user)
                .bind(*rank);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}
