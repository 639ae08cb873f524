//! Claiming due jobs on a real store: a claim takes only due rows no live lease holds, through
//! an index, so its cost does not grow with the rows that are leased or not due yet; and one
//! user's backlog does not keep another user's jobs waiting behind all of it. Runs on SQLite, and on Postgres too when
//! `HERALD_TEST_DATABASE_URL` is set (scripts/test.sh).
mod common;

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use herald_infrastructure::db::{millis, Db};
use herald_infrastructure::scheduler::DueJobs;

/// `count` rows whose job ids start with `prefix` (8 hex digits), due at `due_ms + n`, leased
/// until `lease_until_ms`, of `user` (none: rows from before users were recorded) and ranked in
/// its backlog as the due-jobs projection ranks them (the user's jobs already waiting).
async fn insert(
    db: &Db,
    prefix: &str,
    count: usize,
    due_ms: i64,
    lease_until_ms: i64,
    user: Option<&str>,
) {
    for chunk in (0..count).collect::<Vec<_>>().chunks(500) {
        let values: Vec<String> = chunk
            .iter()
            .map(|n| {
                format!(
                    "('{prefix}-0000-4000-8000-{n:012}', {}, {}, {lease_until_ms}, '{}', {})",
                    due_ms + *n as i64,
                    if lease_until_ms > 0 {
                        "'other'"
                    } else {
                        "NULL"
                    },
                    user.unwrap_or_default(),
                    if user.is_some() { *n } else { 0 },
                )
            })
            .collect();
        sqlx::query(&format!(
            "INSERT INTO job_schedule (job_id, due_at_ms, lease_owner, lease_until_ms, user_id, user_rank) VALUES {}",
            values.join(",")
        ))
        .execute(&db.any)
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn a_claim_reads_only_claimable_rows_through_its_index() {
    for db in common::stores("scheduler").await {
        let now = Utc::now();
        let now_ms = millis(now);
        let hour = TimeDelta::hours(1).num_milliseconds();
        // 20,000 pending for tomorrow, 3,000 due but leased by a live worker, and 40 claimable:
        // 30 due, 10 whose worker's lease ran out.
        insert(&db, "10000000", 20_000, now_ms + 24 * hour, 0, None).await;
        insert(&db, "20000000", 3_000, now_ms - hour, now_ms + hour, None).await;
        insert(&db, "30000000", 30, now_ms - 2 * hour, 0, None).await;
        insert(&db, "40000000", 10, now_ms - 3 * hour, now_ms - 1000, None).await;
        let analyze = if db.is_postgres() {
            "ANALYZE job_schedule"
        } else {
            "ANALYZE"
        };
        sqlx::query(analyze).execute(&db.any).await.unwrap();

        let plan: Vec<String> = if db.is_postgres() {
            let rows: Vec<(String,)> = sqlx::query_as(&format!(
                "EXPLAIN {}",
                DueJobs::claim_statement(&db)
                    .replace("$1", "'me'")
                    .replace("$2", &(now_ms + 30_000).to_string())
                    .replace("$3", &now_ms.to_string())
                    .replace("$4", "32")
            ))
            .fetch_all(&db.any)
            .await
            .unwrap();
            rows.into_iter().map(|r| r.0).collect()
        } else {
            let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(&format!(
                "EXPLAIN QUERY PLAN {}",
                DueJobs::claim_statement(&db)
                    .replace("$1", "'me'")
                    .replace("$2", &(now_ms + 30_000).to_string())
                    .replace("$3", &now_ms.to_string())
                    .replace("$4", "32")
            ))
            .fetch_all(&db.any)
            .await
            .unwrap();
            rows.into_iter().map(|r| r.3).collect()
        };
        let plan = plan.join("\n");
        assert!(
            plan.contains("job_schedule_claimable") || plan.contains("job_schedule_fair"),
            "{plan}"
        );
        assert!(!plan.contains("Seq Scan on job_schedule"), "{plan}");
        assert!(
            !plan.contains("SCAN job_schedule\n") && !plan.ends_with("SCAN job_schedule"),
            "{plan}"
        );

        let due = DueJobs::new(db.clone(), "me", Duration::from_secs(30));
        let first = due.claim(now, 32).await.unwrap();
        assert_eq!(first.len(), 32);
        let second = due.claim(now, 32).await.unwrap();
        assert_eq!(second.len(), 8, "40 claimable in all");
        assert!(due.claim(now, 32).await.unwrap().is_empty());
        let owners: Vec<(String, i64)> = sqlx::query_as(
            "SELECT job_id, lease_until_ms FROM job_schedule WHERE lease_owner = 'me' ORDER BY job_id",
        )
        .fetch_all(&db.any)
        .await
        .unwrap();
        assert_eq!(owners.len(), 40);
        assert!(owners
            .iter()
            .all(|(id, _)| id.starts_with("30000000") || id.starts_with("40000000")));
    }
}

/// User A has 2,000 jobs waiting, user B 5 due after all of them. With claims in due
/// order B would wait for all of A's; ordered by backlog rank, B's five come in the first claim.
#[tokio::test]
async fn one_users_backlog_does_not_keep_another_users_jobs_waiting() {
    for db in common::stores("scheduler").await {
        let now = Utc::now();
        // A's 2,000 are due a millisecond apart, B's 5 after all of them: in due order B's
        // would be the last five claimed. All are due by now.
        let due_ms = millis(now) - 5000;
        insert(&db, "a0000000", 2000, due_ms, 0, Some("a")).await;
        insert(&db, "b0000000", 5, due_ms + 2000, 0, Some("b")).await;
        let due = DueJobs::new(db.clone(), "me", Duration::from_secs(30));
        let first = due.claim(now, 32).await.unwrap();
        let of_b = first
            .iter()
            .filter(|id| id.to_string().starts_with("b0000000"))
            .count();
        assert_eq!(of_b, 5, "B's jobs in the first claim: {of_b}");
        // Nothing is claimed early, whatever its rank: A's jobs all go, in rank order.
        let mut claimed = first.len();
        loop {
            let batch = due.claim(now, 500).await.unwrap();
            if batch.is_empty() {
                break;
            }
            claimed += batch.len();
        }
        assert_eq!(claimed, 2005);
    }
}
