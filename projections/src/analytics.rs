//! The analytics read model: publishing figures per user, connection and hour (a day is the sum
//! of its hours), failures by error class and code, and each published job's latencies, from
//! which percentiles over any range are exact.
//!
//! Every counter is added in the hour its event happened, so the tables do not depend on the
//! order in which different jobs' events arrive: a live consumer and `herald replay` write the
//! same rows. The latest message of an error code is the one of the latest failure, ties going to
//! the greater job id, for the same reason.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use herald_domain::publishing_job::PublishingJobEvent;
use herald_domain::ErrorClass;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row, Transaction};

use crate::{millis, rows_per_statement, values_list, Projection, StreamRun};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// The start of the UTC hour holding `ms` (milliseconds since the epoch).
pub fn hour_start(ms: i64) -> i64 {
    ms - ms.rem_euclid(HOUR_MS)
}

/// The start of the UTC day holding `ms`.
pub fn day_start(ms: i64) -> i64 {
    ms - ms.rem_euclid(DAY_MS)
}

/// The nearest-rank `percent` percentile of `sorted` (ascending): the smallest value with at
/// least `percent`% of the values at or below it, so always one of the values; `None` if empty.
pub fn percentile(sorted: &[i64], percent: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() * percent as usize).div_ceil(100).max(1);
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

/// What the projection remembers about a job between its events.
#[derive(Debug, Clone, PartialEq)]
struct JobFacts {
    user_id: String,
    connection_id: String,
    platform: String,
    accepted_at_ms: i64,
    due_at_ms: i64,
    /// Size of each media item as its latest upload declared it, counted when it completes.
    upload_bytes: BTreeMap<usize, u64>,
    published_at_ms: Option<i64>,
}

impl JobFacts {
    fn from_row(row: &AnyRow) -> anyhow::Result<Self> {
        Ok(JobFacts {
            user_id: row.try_get("user_id")?,
            connection_id: row.try_get("connection_id")?,
            platform: row.try_get("platform")?,
            accepted_at_ms: row.try_get("accepted_at_ms")?,
            due_at_ms: row.try_get("due_at_ms")?,
            upload_bytes: serde_json::from_str(&row.try_get::<String, _>("upload_bytes")?)?,
            published_at_ms: row.try_get("published_at_ms")?,
        })
    }
}

/// Counters of one hour; what one event adds to them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub accepted: i64,
    pub published: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// Attempts started, waits for a limit included.
    pub attempts: i64,
    /// Retries Herald scheduled after a failed attempt (a user's retry of a failed job is not one).
    pub retries: i64,
    /// Attempts that ended waiting for a rate limit or quota window.
    pub limit_waits: i64,
    /// Bytes of media whose upload completed.
    pub bytes_uploaded: i64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.accepted += other.accepted;
        self.published += other.published;
        self.failed += other.failed;
        self.cancelled += other.cancelled;
        self.attempts += other.attempts;
        self.retries += other.retries;
        self.limit_waits += other.limit_waits;
        self.bytes_uploaded += other.bytes_uploaded;
    }
}

/// One failed attempt, as the errors table counts it.
#[derive(Debug, Clone, PartialEq)]
struct Failure {
    class: ErrorClass,
    code: String,
    message: String,
}

/// What one event changes: the job's facts (if they change), and what it adds to its hour.
#[derive(Debug, Default, PartialEq)]
struct Change {
    facts: Option<JobFacts>,
    counts: Counts,
    failure: Option<Failure>,
}

/// What `event` changes, given the job's facts so far (`None` before its `JobScheduled`). Pure:
/// the live path and a rebuild both go through it.
fn change(facts: Option<&JobFacts>, event: &PublishingJobEvent) -> anyhow::Result<Change> {
    use PublishingJobEvent as E;
    if let E::JobScheduled {
        user_id,
        connection_id,
        platform,
        publish_at,
        at,
        ..
    } = event
    {
        return Ok(Change {
            facts: Some(JobFacts {
                user_id: user_id.to_string(),
                connection_id: connection_id.to_string(),
                platform: platform.to_string(),
                accepted_at_ms: millis(*at),
                due_at_ms: millis(*publish_at),
                upload_bytes: BTreeMap::new(),
                published_at_ms: None,
            }),
            counts: Counts {
                accepted: 1,
                ..Counts::default()
            },
            failure: None,
        });
    }
    let facts = facts.ok_or_else(|| anyhow::anyhow!("job has events but no JobScheduled"))?;
    let mut result = Change::default();
    let changed = |update: &dyn Fn(&mut JobFacts)| {
        let mut next = facts.clone();
        update(&mut next);
        Some(next)
    };
    match event {
        E::AttemptStarted { .. } => result.counts.attempts = 1,
        E::UploadStarted {
            media_index,
            total_bytes,
            ..
        } => {
            result.facts = changed(&|f| {
                f.upload_bytes.insert(*media_index, *total_bytes);
            })
        }
        E::UploadCompleted { media_index, .. } => {
            let bytes = facts.upload_bytes.get(media_index).copied().unwrap_or(0);
            result.counts.bytes_uploaded = i64::try_from(bytes).unwrap_or(i64::MAX);
        }
        E::Published { at, .. } => {
            result.counts.published = 1;
            result.facts = changed(&|f| f.published_at_ms = Some(millis(*at)));
        }
        E::AttemptFailed {
            class,
            code,
            message,
            ..
        } => {
            if *class == ErrorClass::RateLimited {
                result.counts.limit_waits = 1;
            }
            result.failure = Some(Failure {
                class: *class,
                code: code.clone(),
                message: message.clone(),
            });
        }
        E::RetryScheduled { .. } => result.counts.retries = 1,
        E::Failed { .. } => result.counts.failed = 1,
        E::Cancelled { .. } => result.counts.cancelled = 1,
        E::Rescheduled { publish_at, .. } => {
            result.facts = changed(&|f| f.due_at_ms = millis(*publish_at))
        }
        E::JobScheduled { .. }
        | E::UploadSessionOpened { .. }
        | E::UploadChunked { .. }
        | E::ThreadPartPublished { .. }
        | E::OutcomeUnknown { .. }
        | E::Reconciled { .. }
        | E::ReconciliationFailed { .. }
        | E::RetryRequested { .. } => {}
    }
    Ok(result)
}

/// Builds `analytics_jobs`, `analytics_hourly` and `analytics_errors`.
#[derive(Debug, Default)]
pub struct AnalyticsProjection;

const SELECT_FACTS: &str =
    "SELECT user_id, connection_id, platform, accepted_at_ms, due_at_ms, upload_bytes,
    published_at_ms FROM analytics_jobs WHERE job_id = $1";

#[async_trait::async_trait]
impl Projection for AnalyticsProjection {
    type Event = PublishingJobEvent;

    fn name(&self) -> &'static str {
        "analytics"
    }

    fn aggregate_type(&self) -> &'static str {
        "PublishingJob"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["analytics_jobs", "analytics_hourly", "analytics_errors"]
    }

    /// One event is a run of one: the live path and a rebuild write through the same fold.
    async fn apply(
        &self,
        tx: &mut Transaction<'static, Any>,
        aggregate_id: &str,
        sequence: i64,
        event: &PublishingJobEvent,
    ) -> anyhow::Result<()> {
        let run = StreamRun {
            stream_id: aggregate_id.to_string(),
            events: vec![(sequence, event.clone())],
        };
        self.apply_runs(tx, std::slice::from_ref(&run)).await
    }

    async fn apply_runs(
        &self,
        tx: &mut Transaction<'static, Any>,
        runs: &[StreamRun<PublishingJobEvent>],
    ) -> anyhow::Result<()> {
        let mut batch = Batch::default();
        for run in runs {
            let mut facts: Option<JobFacts> = None;
            let mut changed = false;
            for (_, event) in &run.events {
                if facts.is_none() && !matches!(event, PublishingJobEvent::JobScheduled { .. }) {
                    facts = load_facts(tx, &run.stream_id).await?;
                }
                let mut change = change(facts.as_ref(), event)
                    .map_err(|e| anyhow::anyhow!("analytics of job {}: {e}", run.stream_id))?;
                if let Some(next) = change.facts.take() {
                    facts = Some(next);
                    changed = true;
                }
                let current = facts.as_ref().expect("change refuses a job without facts");
                batch.add(&run.stream_id, current, event, &change);
            }
            if let (true, Some(facts)) = (changed, facts) {
                batch.jobs.push((run.stream_id.clone(), facts));
            }
        }
        save_facts(tx, &batch.jobs).await?;
        add_counts(tx, &batch.hours).await?;
        add_failures(tx, &batch.errors).await
    }
}

async fn load_facts(
    tx: &mut Transaction<'static, Any>,
    job_id: &str,
) -> anyhow::Result<Option<JobFacts>> {
    sqlx::query(SELECT_FACTS)
        .bind(job_id)
        .fetch_optional(&mut **tx)
        .await?
        .as_ref()
        .map(JobFacts::from_row)
        .transpose()
}

/// An hour of one user's connection.
type HourKey = (String, String, i64);
/// An hour of one user's connection, error class and code.
type ErrorKey = (String, String, i64, &'static str, String);

/// Failed attempts of one error key, and the latest of them.
#[derive(Debug)]
struct FailureRow {
    platform: String,
    failures: i64,
    latest_at_ms: i64,
    latest_job_id: String,
    latest_message: String,
}

/// What a run of events changes, summed in memory and written with a few statements.
#[derive(Debug, Default)]
struct Batch {
    /// Jobs whose facts changed, with their facts after the run.
    jobs: Vec<(String, JobFacts)>,
    hours: BTreeMap<HourKey, (String, Counts)>,
    errors: BTreeMap<ErrorKey, FailureRow>,
}

impl Batch {
    fn add(&mut self, job_id: &str, facts: &JobFacts, event: &PublishingJobEvent, change: &Change) {
        // Events without a time (upload chunks) change no counter.
        let Some(at) = event.occurred_at() else {
            return;
        };
        let (at_ms, hour) = (millis(at), hour_start(millis(at)));
        if change.counts != Counts::default() {
            self.hours
                .entry((facts.user_id.clone(), facts.connection_id.clone(), hour))
                .or_insert_with(|| (facts.platform.clone(), Counts::default()))
                .1
                .add(&change.counts);
        }
        if let Some(failure) = &change.failure {
            let key = (
                facts.user_id.clone(),
                facts.connection_id.clone(),
                hour,
                failure.class.as_str(),
                failure.code.clone(),
            );
            let row = self.errors.entry(key).or_insert_with(|| FailureRow {
                platform: facts.platform.clone(),
                failures: 0,
                latest_at_ms: at_ms,
                latest_job_id: job_id.to_string(),
                latest_message: failure.message.clone(),
            });
            row.failures += 1;
            // Strictly later, as the table's upsert decides: of equal ones the first stays.
            if (at_ms, job_id) > (row.latest_at_ms, row.latest_job_id.as_str()) {
                row.latest_at_ms = at_ms;
                row.latest_job_id = job_id.to_string();
                row.latest_message = failure.message.clone();
            }
        }
    }
}

async fn save_facts(
    tx: &mut Transaction<'static, Any>,
    jobs: &[(String, JobFacts)],
) -> anyhow::Result<()> {
    const COLUMNS: usize = 10;
    for chunk in jobs.chunks(rows_per_statement(tx, COLUMNS)) {
        let sql = format!(
            "INSERT INTO analytics_jobs (job_id, user_id, connection_id, platform, accepted_at_ms, due_at_ms,
                upload_bytes, published_at_ms, accepted_to_published_ms, due_to_published_ms)
             VALUES {}
             ON CONFLICT (job_id) DO UPDATE SET due_at_ms = excluded.due_at_ms, upload_bytes = excluded.upload_bytes,
                published_at_ms = excluded.published_at_ms,
                accepted_to_published_ms = excluded.accepted_to_published_ms,
                due_to_published_ms = excluded.due_to_published_ms",
            values_list(COLUMNS, chunk.len(), 1)
        );
        let mut query = sqlx::query(&sql).persistent(chunk.len() == 1);
        for (job_id, facts) in chunk {
            // A job published before it was due (sent at once, or early) waited nothing.
            let latency = |from: i64| facts.published_at_ms.map(|at| (at - from).max(0));
            query = query
                .bind(job_id)
                .bind(&facts.user_id)
                .bind(&facts.connection_id)
                .bind(&facts.platform)
                .bind(facts.accepted_at_ms)
                .bind(facts.due_at_ms)
                .bind(serde_json::to_string(&facts.upload_bytes)?)
                .bind(facts.published_at_ms)
                .bind(latency(facts.accepted_at_ms))
                .bind(latency(facts.due_at_ms));
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

async fn add_counts(
    tx: &mut Transaction<'static, Any>,
    hours: &BTreeMap<HourKey, (String, Counts)>,
) -> anyhow::Result<()> {
    const COLUMNS: usize = 12;
    let hours: Vec<_> = hours.iter().collect();
    for chunk in hours.chunks(rows_per_statement(tx, COLUMNS)) {
        let sql = format!(
            "INSERT INTO analytics_hourly (user_id, connection_id, platform, hour_ms, accepted, published, failed,
                cancelled, attempts, retries, limit_waits, bytes_uploaded)
             VALUES {}
             ON CONFLICT (user_id, connection_id, hour_ms) DO UPDATE SET
                accepted = analytics_hourly.accepted + excluded.accepted,
                published = analytics_hourly.published + excluded.published,
                failed = analytics_hourly.failed + excluded.failed,
                cancelled = analytics_hourly.cancelled + excluded.cancelled,
                attempts = analytics_hourly.attempts + excluded.attempts,
                retries = analytics_hourly.retries + excluded.retries,
                limit_waits = analytics_hourly.limit_waits + excluded.limit_waits,
                bytes_uploaded = analytics_hourly.bytes_uploaded + excluded.bytes_uploaded",
            values_list(COLUMNS, chunk.len(), 1)
        );
        let mut query = sqlx::query(&sql).persistent(chunk.len() == 1);
        for ((user_id, connection_id, hour), (platform, counts)) in chunk {
            query = query
                .bind(user_id)
                .bind(connection_id)
                .bind(platform)
                .bind(*hour)
                .bind(counts.accepted)
                .bind(counts.published)
                .bind(counts.failed)
                .bind(counts.cancelled)
                .bind(counts.attempts)
                .bind(counts.retries)
                .bind(counts.limit_waits)
                .bind(counts.bytes_uploaded);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

async fn add_failures(
    tx: &mut Transaction<'static, Any>,
    errors: &BTreeMap<ErrorKey, FailureRow>,
) -> anyhow::Result<()> {
    const COLUMNS: usize = 10;
    // The latest failure by (time, job id) names the message and example job, whatever order
    // different jobs' events were applied in.
    const LATER: &str = "(excluded.latest_at_ms > analytics_errors.latest_at_ms
        OR (excluded.latest_at_ms = analytics_errors.latest_at_ms AND excluded.latest_job_id > analytics_errors.latest_job_id))";
    let errors: Vec<_> = errors.iter().collect();
    for chunk in errors.chunks(rows_per_statement(tx, COLUMNS)) {
        let sql = format!(
            "INSERT INTO analytics_errors (user_id, connection_id, platform, hour_ms, error_class, error_code, failures,
                latest_at_ms, latest_job_id, latest_message)
             VALUES {}
             ON CONFLICT (user_id, connection_id, hour_ms, error_class, error_code) DO UPDATE SET
                failures = analytics_errors.failures + excluded.failures,
                latest_message = CASE WHEN {LATER} THEN excluded.latest_message ELSE analytics_errors.latest_message END,
                latest_job_id = CASE WHEN {LATER} THEN excluded.latest_job_id ELSE analytics_errors.latest_job_id END,
                latest_at_ms = CASE WHEN {LATER} THEN excluded.latest_at_ms ELSE analytics_errors.latest_at_ms END",
            values_list(COLUMNS, chunk.len(), 1)
        );
        let mut query = sqlx::query(&sql).persistent(chunk.len() == 1);
        for ((user_id, connection_id, hour, class, code), row) in chunk {
            query = query
                .bind(user_id)
                .bind(connection_id)
                .bind(&row.platform)
                .bind(*hour)
                .bind(*class)
                .bind(code)
                .bind(row.failures)
                .bind(row.latest_at_ms)
                .bind(&row.latest_job_id)
                .bind(&row.latest_message);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Which figures a query covers. `user_id: None` is every user (operators only).
#[derive(Debug, Clone, Default)]
pub struct AnalyticsScope {
    pub user_id: Option<String>,
    pub platform: Option<String>,
    pub connection_id: Option<String>,
    /// Inclusive; counters are per hour, so they cover the hours that start in `[from, to)`.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub to: Option<DateTime<Utc>>,
}

impl AnalyticsScope {
    fn range_ms(&self) -> (i64, i64) {
        (
            self.from.map(millis).unwrap_or(i64::MIN),
            self.to.map(millis).unwrap_or(i64::MAX),
        )
    }
}

/// Latency percentiles of published jobs, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50: Option<i64>,
    pub p95: Option<i64>,
    pub p99: Option<i64>,
}

impl Percentiles {
    /// Of `values`, in any order.
    pub fn of(mut values: Vec<i64>) -> Self {
        values.sort_unstable();
        Percentiles {
            count: values.len(),
            p50: percentile(&values, 50),
            p95: percentile(&values, 95),
            p99: percentile(&values, 99),
        }
    }
}

/// Publish latencies of the jobs published in a scope.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latencies {
    pub accepted_to_published_ms: Percentiles,
    pub due_to_published_ms: Percentiles,
}

/// One error class and code over a scope.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorFigure {
    pub class: String,
    pub code: String,
    pub count: i64,
    pub latest_message: String,
    pub latest_at: DateTime<Utc>,
    pub example_job_id: String,
}

/// Queries over the analytics read model.
#[derive(Debug, Clone)]
pub struct AnalyticsQueries {
    pool: AnyPool,
}

/// The filter every query shares; `$1`-`$5` are bound by [`bind_scope`].
const SCOPE_FILTER: &str = "($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR platform = $2)
    AND ($3 IS NULL OR connection_id = $3)";

impl AnalyticsQueries {
    pub fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// The scope's counters per hour with any activity, oldest first.
    pub async fn hours(&self, scope: &AnalyticsScope) -> anyhow::Result<Vec<(i64, Counts)>> {
        let (from, to) = scope.range_ms();
        let rows = sqlx::query(&format!(
            "SELECT hour_ms, CAST(SUM(accepted) AS BIGINT) AS accepted, CAST(SUM(published) AS BIGINT) AS published,
                CAST(SUM(failed) AS BIGINT) AS failed, CAST(SUM(cancelled) AS BIGINT) AS cancelled,
                CAST(SUM(attempts) AS BIGINT) AS attempts, CAST(SUM(retries) AS BIGINT) AS retries,
                CAST(SUM(limit_waits) AS BIGINT) AS limit_waits, CAST(SUM(bytes_uploaded) AS BIGINT) AS bytes_uploaded
             FROM analytics_hourly WHERE {SCOPE_FILTER} AND hour_ms >= $4 AND hour_ms < $5
             GROUP BY hour_ms ORDER BY hour_ms"
        ))
        .bind(scope.user_id.as_deref())
        .bind(scope.platform.as_deref())
        .bind(scope.connection_id.as_deref())
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("hour_ms")?,
                    Counts {
                        accepted: row.try_get("accepted")?,
                        published: row.try_get("published")?,
                        failed: row.try_get("failed")?,
                        cancelled: row.try_get("cancelled")?,
                        attempts: row.try_get("attempts")?,
                        retries: row.try_get("retries")?,
                        limit_waits: row.try_get("limit_waits")?,
                        bytes_uploaded: row.try_get("bytes_uploaded")?,
                    },
                ))
            })
            .collect()
    }

    /// Latency percentiles of the jobs published in `[from, to)`, exact: computed from each
    /// job's latencies.
    pub async fn latencies(&self, scope: &AnalyticsScope) -> anyhow::Result<Latencies> {
        let (from, to) = scope.range_ms();
        let rows = sqlx::query(&format!(
            "SELECT accepted_to_published_ms, due_to_published_ms FROM analytics_jobs
             WHERE {SCOPE_FILTER} AND published_at_ms >= $4 AND published_at_ms < $5"
        ))
        .bind(scope.user_id.as_deref())
        .bind(scope.platform.as_deref())
        .bind(scope.connection_id.as_deref())
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        let mut accepted = Vec::with_capacity(rows.len());
        let mut due = Vec::with_capacity(rows.len());
        for row in &rows {
            accepted.push(row.try_get::<i64, _>("accepted_to_published_ms")?);
            due.push(row.try_get::<i64, _>("due_to_published_ms")?);
        }
        Ok(Latencies {
            accepted_to_published_ms: Percentiles::of(accepted),
            due_to_published_ms: Percentiles::of(due),
        })
    }

    /// Failed attempts by error class and code, most frequent first (then by class and code).
    pub async fn errors(&self, scope: &AnalyticsScope) -> anyhow::Result<Vec<ErrorFigure>> {
        let (from, to) = scope.range_ms();
        let rows = sqlx::query(&format!(
            "SELECT error_class, error_code, failures, latest_at_ms, latest_job_id, latest_message
             FROM analytics_errors WHERE {SCOPE_FILTER} AND hour_ms >= $4 AND hour_ms < $5"
        ))
        .bind(scope.user_id.as_deref())
        .bind(scope.platform.as_deref())
        .bind(scope.connection_id.as_deref())
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        let mut figures: BTreeMap<(String, String), ErrorFigure> = BTreeMap::new();
        for row in &rows {
            let class: String = row.try_get("error_class")?;
            let code: String = row.try_get("error_code")?;
            let figure = ErrorFigure {
                class: class.clone(),
                code: code.clone(),
                count: row.try_get("failures")?,
                latest_message: row.try_get("latest_message")?,
                latest_at: crate::from_millis(row.try_get("latest_at_ms")?),
                example_job_id: row.try_get("latest_job_id")?,
            };
            figures
                .entry((class, code))
                .and_modify(|merged| merged.merge(&figure))
                .or_insert(figure);
        }
        let mut figures: Vec<ErrorFigure> = figures.into_values().collect();
        figures.sort_by_key(|figure| std::cmp::Reverse(figure.count));
        Ok(figures)
    }
}

impl ErrorFigure {
    /// Adds `other`'s failures, keeping the latest message by (time, job id), as the table does.
    fn merge(&mut self, other: &ErrorFigure) {
        self.count += other.count;
        if (other.latest_at, &other.example_job_id) > (self.latest_at, &self.example_job_id) {
            self.latest_at = other.latest_at;
            self.latest_message = other.latest_message.clone();
            self.example_job_id = other.example_job_id.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use herald_domain::{AttemptId, ConnectionId, JobId, Platform, PreparedContent, UserId};

    use super::*;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + chrono::TimeDelta::minutes(minute)
    }

    #[test]
    fn hours_and_days_start_on_the_utc_boundary_before_the_time() {
        let ms = millis(at(75));
        assert_eq!(hour_start(ms), millis(at(60)));
        assert_eq!(
            day_start(ms),
            millis(
                DateTime::parse_from_rfc3339("2026-11-22T00:00:00Z")
                    .unwrap()
                    .with_timezone(&Utc)
            )
        );
        assert_eq!(hour_start(-1), -HOUR_MS);
        assert_eq!(hour_start(0), 0);
    }

    #[test]
    fn percentiles_are_nearest_rank_values_of_the_distribution() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[7], 99), Some(7));
        let hundred: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 50), Some(50));
        assert_eq!(percentile(&hundred, 95), Some(95));
        assert_eq!(percentile(&hundred, 99), Some(99));
        assert_eq!(percentile(&[1, 2, 3, 1000], 50), Some(2));
        assert_eq!(percentile(&[1, 2, 3, 1000], 95), Some(1000));
        let spread = Percentiles::of(vec![30, 10, 20]);
        assert_eq!(
            (spread.count, spread.p50, spread.p99),
            (3, Some(20), Some(30))
        );
    }

    fn scheduled(publish_at: DateTime<Utc>) -> PublishingJobEvent {
        let user = UserId::parse("alice").unwrap();
        PublishingJobEvent::JobScheduled {
            job_id: JobId::from_uuid(uuid::Uuid::from_u128(1)),
            connection_id: ConnectionId::for_account(&user, Platform::X, "alice_x"),
            user_id: user,
            platform: Platform::X,
            content: PreparedContent::default(),
            publish_at,
            max_attempts: 3,
            at: at(0),
        }
    }

    #[test]
    fn a_job_counts_once_accepted_and_remembers_when_it_was_due() {
        let change = change(None, &scheduled(at(30))).unwrap();
        assert_eq!(change.counts.accepted, 1);
        let facts = change.facts.unwrap();
        assert_eq!(
            (
                facts.accepted_at_ms,
                facts.due_at_ms,
                facts.platform.as_str()
            ),
            (millis(at(0)), millis(at(30)), "x")
        );
        let moved = super::change(
            Some(&facts),
            &PublishingJobEvent::Rescheduled {
                publish_at: at(45),
                at: at(1),
            },
        )
        .unwrap();
        assert_eq!(moved.facts.unwrap().due_at_ms, millis(at(45)));
        assert_eq!(moved.counts, Counts::default());
    }

    #[test]
    fn a_rate_limited_attempt_is_a_limit_wait_and_a_failure_of_its_code() {
        let facts = change(None, &scheduled(at(0))).unwrap().facts.unwrap();
        let failed = change(
            Some(&facts),
            &PublishingJobEvent::AttemptFailed {
                attempt_id: AttemptId::from_uuid(uuid::Uuid::from_u128(2)),
                attempt_number: 1,
                class: ErrorClass::RateLimited,
                code: "http_429".into(),
                message: "slow down".into(),
                retry_at: Some(at(5)),
                at: at(1),
            },
        )
        .unwrap();
        assert_eq!(failed.counts.limit_waits, 1);
        assert_eq!(failed.failure.unwrap().code, "http_429");
        assert!(
            failed.facts.is_none(),
            "a failure changes no fact of the job"
        );
    }

    #[test]
    fn completed_uploads_count_the_bytes_their_upload_declared() {
        let facts = change(None, &scheduled(at(0))).unwrap().facts.unwrap();
        let attempt = AttemptId::from_uuid(uuid::Uuid::from_u128(2));
        let started = change(
            Some(&facts),
            &PublishingJobEvent::UploadStarted {
                attempt_id: attempt,
                media_index: 0,
                total_bytes: 5_000,
                resumed_from: 0,
                at: at(1),
            },
        )
        .unwrap();
        let facts = started.facts.unwrap();
        let completed = change(
            Some(&facts),
            &PublishingJobEvent::UploadCompleted {
                attempt_id: attempt,
                media_index: 0,
                platform_media_id: "m".into(),
                at: at(2),
            },
        )
        .unwrap();
        assert_eq!(completed.counts.bytes_uploaded, 5_000);
    }

    #[test]
    fn a_batch_sums_an_hour_and_keeps_the_latest_failure_whatever_the_job_order() {
        let facts = change(None, &scheduled(at(0))).unwrap().facts.unwrap();
        let failed = |minute: i64, message: &str| PublishingJobEvent::AttemptFailed {
            attempt_id: AttemptId::from_uuid(uuid::Uuid::from_u128(2)),
            attempt_number: 1,
            class: ErrorClass::Retryable,
            code: "http_503".into(),
            message: message.into(),
            retry_at: None,
            at: at(minute),
        };
        let events = [
            ("job-b", failed(5, "later")),
            ("job-a", failed(1, "earlier")),
            ("job-a", failed(5, "tie")),
        ];
        let mut forward = Batch::default();
        let mut backward = Batch::default();
        for (job, event) in &events {
            forward.add(job, &facts, event, &change(Some(&facts), event).unwrap());
        }
        for (job, event) in events.iter().rev() {
            backward.add(job, &facts, event, &change(Some(&facts), event).unwrap());
        }
        for batch in [forward, backward] {
            let row = batch.errors.values().next().unwrap();
            assert_eq!(batch.errors.len(), 1, "one hour, class and code");
            assert_eq!(row.failures, 3);
            assert_eq!(
                (row.latest_job_id.as_str(), row.latest_message.as_str()),
                ("job-b", "later")
            );
        }
    }

    #[test]
    fn a_job_event_before_its_scheduling_is_refused() {
        assert!(change(None, &PublishingJobEvent::Cancelled { at: at(0) }).is_err());
    }
}
