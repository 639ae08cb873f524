//! The claim side of the durable schedule. The `job_schedule` table (written by the due-jobs
//! projection from `JobScheduled`, `RetryScheduled`, ... events) says when each job is due;
//! workers claim due rows with a lease, so several worker processes never work one job at once,
//! and a job whose worker died is picked up again when its lease runs out.
use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_domain::JobId;
use sqlx::Row;

use crate::db::{millis, Db};

/// Leases on due jobs for one worker process.
#[derive(Debug, Clone)]
pub struct DueJobs {
    db: Db,
    owner: String,
    lease: Duration,
}

impl DueJobs {
    /// `owner` names this worker; `lease` is how long a claim lasts without renewal.
    pub fn new(db: Db, owner: impl Into<String>, lease: Duration) -> Self {
        Self {
            db,
            owner: owner.into(),
            lease,
        }
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Claims up to `limit` jobs that are due and not leased by a live worker.
    pub async fn claim(&self, now: DateTime<Utc>, limit: i64) -> anyhow::Result<Vec<JobId>> {
        let now_ms = millis(now);
        let until = now_ms + self.lease.as_millis() as i64;
        let rows = sqlx::query(Self::claim_statement(&self.db))
            .bind(&self.owner)
            .bind(until)
            .bind(now_ms)
            .bind(limit)
            .fetch_all(&self.db.any)
            .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("job_id")?;
                Ok(JobId::parse(&id)?)
            })
            .collect()
    }

    /// The claim: `$1` owner, `$2` lease end, `$3` now, `$4` how many. Both its filter and its
    /// order are the indexed `job_schedule_claimable` expression (when a row becomes claimable),
    /// so only claimable rows are read, oldest first, however many are leased or pending.
    pub fn claim_statement(db: &Db) -> &'static str {
        if db.is_postgres() {
            "UPDATE job_schedule SET lease_owner = $1, lease_until_ms = $2
             WHERE job_id IN (SELECT job_id FROM job_schedule
                              WHERE GREATEST(due_at_ms, lease_until_ms) <= $3
                              ORDER BY GREATEST(due_at_ms, lease_until_ms)
                              LIMIT $4 FOR UPDATE SKIP LOCKED)
             RETURNING job_id"
        } else {
            // SQLite serializes writers, so the sub-select needs no row locks.
            "UPDATE job_schedule SET lease_owner = $1, lease_until_ms = $2
             WHERE job_id IN (SELECT job_id FROM job_schedule
                              WHERE max(due_at_ms, lease_until_ms) <= $3
                              ORDER BY max(due_at_ms, lease_until_ms) LIMIT $4)
             RETURNING job_id"
        }
    }

    /// Renews this worker's lease on a job it is still working on.
    pub async fn renew(&self, job: &JobId) -> anyhow::Result<()> {
        let until = millis(Utc::now()) + self.lease.as_millis() as i64;
        sqlx::query(
            "UPDATE job_schedule SET lease_until_ms = $1 WHERE job_id = $2 AND lease_owner = $3",
        )
        .bind(until)
        .bind(job.to_string())
        .bind(&self.owner)
        .execute(&self.db.any)
        .await?;
        Ok(())
    }

    /// Hands back every job this worker holds, to be claimed at once by another: for a worker
    /// that stops with attempts in flight. The next worker checks with the platform before it
    /// sends anything again, as after a crash, only without waiting for the leases to run out.
    pub async fn release_all(&self) -> anyhow::Result<u64> {
        let released = sqlx::query(
            "UPDATE job_schedule SET lease_owner = NULL, lease_until_ms = $1 WHERE lease_owner = $2",
        )
        .bind(millis(Utc::now()))
        .bind(&self.owner)
        .execute(&self.db.any)
        .await?;
        Ok(released.rows_affected())
    }

    /// Ends this worker's claim; nobody looks at the job again before `not_before`.
    pub async fn release(&self, job: &JobId, not_before: DateTime<Utc>) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE job_schedule SET lease_owner = NULL, lease_until_ms = $1 WHERE job_id = $2 AND lease_owner = $3",
        )
        .bind(millis(not_before))
        .bind(job.to_string())
        .bind(&self.owner)
        .execute(&self.db.any)
        .await?;
        Ok(())
    }
}
