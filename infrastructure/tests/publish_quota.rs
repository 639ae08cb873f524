//! The shared publishing-quota reservation (`RateLimitGate::reserve_publish`) on SQLite and on
//! Postgres: the platform's live count plus Herald's reservations it may not show yet never
//! exceed the quota, even with many workers reserving at once through separate pools (separate
//! processes, as far as the database can tell).
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use herald_domain::Platform;
use herald_infrastructure::db::{create_scratch_database, Db};
use herald_infrastructure::platforms::{PublishSettled, QuotaReading, RateLimitGate};
use herald_infrastructure::rate_limit::SharedRateLimits;

const SCOPE: &str = "instagram_publishing_quota";
const DAY: Duration = Duration::from_secs(86_400);

fn reading(used: u64, total: u64, read_at: DateTime<Utc>) -> QuotaReading {
    QuotaReading {
        used,
        total,
        window: DAY,
        read_at,
    }
}

async fn sqlite() -> String {
    let dir = std::env::temp_dir().join(format!("herald-quota-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    format!("sqlite://{}", dir.join("q.db").display())
}

/// A fresh Postgres database, when the test services are up (`scripts/test.sh` starts them).
async fn postgres() -> Option<String> {
    let admin = std::env::var("HERALD_TEST_DATABASE_URL").ok()?;
    let (url, _) = create_scratch_database(&admin, "herald_test")
        .await
        .expect("create a test database");
    Some(url)
}

/// Two "processes" (pools) on the same database, each with its gate for one account.
async fn two_workers(url: &str) -> (SharedRateLimits, SharedRateLimits) {
    let first = Db::connect(url, 4).await.expect("database opens");
    let second = Db::connect(url, 4).await.expect("database opens");
    (
        SharedRateLimits::new(first, Platform::Instagram, "17841400000000001"),
        SharedRateLimits::new(second, Platform::Instagram, "17841400000000001"),
    )
}

/// The live reading says 1 of 3 is used; 12 concurrent reservations from two workers: exactly
/// two get a slot.
async fn concurrent_reservations_never_share_the_last_slot(url: &str) {
    let (a, b) = two_workers(url).await;
    let now = Utc::now();
    let tries = (0..12).map(|i| {
        let gate = if i % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move { gate.reserve_publish(SCOPE, reading(1, 3, now)).await })
    });
    let results = futures::future::join_all(tries).await;
    let taken: Vec<_> = results
        .into_iter()
        .map(|r| r.unwrap())
        .filter_map(Result::ok)
        .collect();
    assert_eq!(taken.len(), 2, "{taken:?}");
    let mut left: Vec<u64> = taken.iter().map(|r| r.left).collect();
    left.sort_unstable();
    assert_eq!(left, [0, 1]);
    assert!(taken.iter().all(|r| !r.id.is_empty()));
}

/// How published, refused and unknown publishes count against later readings.
async fn settled_publishes_count_until_the_platform_shows_them(url: &str) {
    let (a, b) = two_workers(url).await;
    let before = Utc::now() - TimeDelta::seconds(10);
    let first = a
        .reserve_publish(SCOPE, reading(0, 3, before))
        .await
        .unwrap();
    let second = b
        .reserve_publish(SCOPE, reading(0, 3, before))
        .await
        .unwrap();
    assert_eq!((first.left, second.left), (2, 1));

    // Refused: the slot is free again at once.
    b.settle_publish(SCOPE, &second, PublishSettled::NotPublished)
        .await;
    // Published: a reading taken before the publish does not show it, so it still counts...
    a.settle_publish(SCOPE, &first, PublishSettled::Published)
        .await;
    let third = b
        .reserve_publish(SCOPE, reading(0, 3, before))
        .await
        .unwrap();
    assert_eq!(
        third.left, 1,
        "the published one counts for an older reading"
    );
    // ...and a reading taken after it does (the platform counts it: used = 1).
    let after = Utc::now() + TimeDelta::milliseconds(5);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let full = a
        .reserve_publish(SCOPE, reading(2, 3, after))
        .await
        .unwrap_err();
    // `third` never settled (outcome unknown): it stays counted on top of the live count.
    assert_eq!(full.in_flight, 1, "{full:?}");
    let frees_at = full
        .frees_at
        .expect("when the unknown one leaves the window");
    assert!(frees_at > Utc::now() + TimeDelta::hours(23), "{frees_at}");
    let ok = a
        .reserve_publish(SCOPE, reading(1, 3, after))
        .await
        .unwrap();
    assert_eq!(ok.left, 0);

    // Another account has a quota of its own.
    let other = SharedRateLimits::new(
        Db::connect(url, 2).await.unwrap(),
        Platform::Instagram,
        "17841400000000002",
    );
    assert!(other
        .reserve_publish(SCOPE, reading(0, 1, after))
        .await
        .is_ok());
    assert!(other
        .reserve_publish(SCOPE, reading(0, 1, after))
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_reservations_are_atomic_across_workers() {
    concurrent_reservations_never_share_the_last_slot(&sqlite().await).await;
    settled_publishes_count_until_the_platform_shows_them(&sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_reservations_are_atomic_across_workers() {
    let Some(url) = postgres().await else {
        eprintln!("HERALD_TEST_DATABASE_URL is not set: run through scripts/test.sh");
        return;
    };
    concurrent_reservations_never_share_the_last_slot(&url).await;
    let Some(url) = postgres().await else { return };
    settled_publishes_count_until_the_platform_shows_them(&url).await;
}
