//! The shared gate on a real store: application-wide budgets shared by every account of one
//! client id, account budgets kept apart, and reports from one window merged conservatively.
//! Runs on SQLite, and on Postgres too when `HERALD_TEST_DATABASE_URL` is set (scripts/test.sh).
mod common;

use chrono::{TimeDelta, Utc};
use herald_domain::Platform;
use herald_infrastructure::db::Db;
use herald_infrastructure::platforms::{app_key, RateLimitGate};
use herald_infrastructure::rate_limit::SharedRateLimits;

async fn buckets(db: &Db) -> Vec<String> {
    sqlx::query_scalar("SELECT bucket FROM rate_limits ORDER BY bucket")
        .fetch_all(&db.any)
        .await
        .unwrap()
}

#[tokio::test]
async fn two_accounts_of_one_app_share_the_app_budget_and_keep_their_own() {
    for db in common::stores("rate_limits").await {
        // Two workers, each publishing for another account of the same Reddit app.
        let alice = SharedRateLimits::new(db.clone(), Platform::Reddit, "t2_alice");
        let bob = SharedRateLimits::new(db.clone(), Platform::Reddit, "t2_bob");
        let api = app_key("client-1", "reddit_api");
        let reset = Utc::now() + TimeDelta::minutes(10);
        // Reddit said (to Alice's call) that the client id has three requests left.
        alice.observe(&api, Some(3), Some(reset)).await;
        assert!(alice.acquire(&api).await.is_ok());
        assert!(bob.acquire(&api).await.is_ok());
        assert!(alice.acquire(&api).await.is_ok());
        let until = bob.acquire(&api).await.unwrap_err();
        assert_eq!(
            until.timestamp_millis(),
            reset.timestamp_millis(),
            "Bob waits for Alice's spend"
        );
        assert!(alice.acquire(&api).await.is_err());

        // Another app's budget and each account's own budgets are apart.
        assert!(bob
            .acquire(&app_key("client-2", "reddit_api"))
            .await
            .is_ok());
        alice.observe("reddit_submit", Some(0), Some(reset)).await;
        assert!(alice.acquire("reddit_submit").await.is_err());
        assert!(bob.acquire("reddit_submit").await.is_ok(), "per account");

        // Documented budgets and quotas take app keys the same way.
        let posts = app_key("client-1", "x_posts");
        assert!(alice
            .acquire_documented(&posts, 1, std::time::Duration::from_secs(60))
            .await
            .is_ok());
        assert!(bob
            .acquire_documented(&posts, 1, std::time::Duration::from_secs(60))
            .await
            .is_err());

        // The store holds the client id, never anything else of the app's credentials.
        let keys = buckets(&db).await;
        assert!(
            keys.contains(&"app:client-1:reddit_api".to_owned()),
            "{keys:?}"
        );
        assert!(
            keys.contains(&"reddit:t2_alice:reddit_submit".to_owned()),
            "{keys:?}"
        );
        assert!(!keys.iter().any(|k| k.contains("t2_") && k.contains("app:")));
    }
}

#[tokio::test]
async fn reports_from_one_window_never_raise_what_is_left() {
    for db in common::stores("rate_limits").await {
        let first = SharedRateLimits::new(db.clone(), Platform::X, "user-1");
        let second = SharedRateLimits::new(db.clone(), Platform::X, "user-1");
        let reset = Utc::now() + TimeDelta::minutes(15);
        first.observe("create_tweet", Some(3), Some(reset)).await;
        // Both workers send; the answers come back out of order.
        assert!(first.acquire("create_tweet").await.is_ok());
        assert!(second.acquire("create_tweet").await.is_ok());
        second.observe("create_tweet", Some(1), Some(reset)).await;
        first.observe("create_tweet", Some(2), Some(reset)).await;
        // One call is left, not two: the later answer (sent earlier) does not give one back.
        assert!(first.acquire("create_tweet").await.is_ok());
        assert!(second.acquire("create_tweet").await.is_err());
        // A new window replaces the count.
        let next = reset + TimeDelta::minutes(15);
        first.observe("create_tweet", Some(5), Some(next)).await;
        assert!(second.acquire("create_tweet").await.is_ok());
        // A window that has passed does not hold the next one back.
        first
            .observe(
                "media_status",
                Some(0),
                Some(Utc::now() - TimeDelta::seconds(1)),
            )
            .await;
        first
            .observe(
                "media_status",
                Some(7),
                Some(Utc::now() + TimeDelta::minutes(15)),
            )
            .await;
        for _ in 0..7 {
            assert!(second.acquire("media_status").await.is_ok());
        }
        assert!(second.acquire("media_status").await.is_err());
    }
}

#[tokio::test]
async fn calls_made_before_a_new_window_is_reported_are_counted_against_it() {
    for db in common::stores("rate_limits").await {
        let one = SharedRateLimits::new(db.clone(), Platform::X, "user-1");
        let two = SharedRateLimits::new(db.clone(), Platform::X, "user-1");
        // Nothing known yet: both workers call (the headers cannot say anything before the
        // first answer) and X has three calls in the window.
        assert!(one.acquire("create_tweet").await.is_ok());
        assert!(two.acquire("create_tweet").await.is_ok());
        let reset = Utc::now() + TimeDelta::seconds(30);
        // The first answer counts only its own call: two left at X, and the other worker's call
        // is on its way, so one for Herald.
        one.observe("create_tweet", Some(2), Some(reset)).await;
        assert!(one.acquire("create_tweet").await.is_ok());
        two.observe("create_tweet", Some(1), Some(reset)).await;
        let until = two.acquire("create_tweet").await.unwrap_err();
        assert_eq!(until.timestamp_millis(), reset.timestamp_millis());

        // The same after a window has passed: what was left of it does not count.
        let passed = Utc::now() - TimeDelta::seconds(1);
        one.observe("media_append", Some(5), Some(passed)).await;
        assert!(one.acquire("media_append").await.is_ok());
        assert!(two.acquire("media_append").await.is_ok());
        let next = Utc::now() + TimeDelta::seconds(30);
        two.observe("media_append", Some(2), Some(next)).await;
        assert!(one.acquire("media_append").await.is_ok());
        assert!(two.acquire("media_append").await.is_err());
    }
}

#[tokio::test]
async fn a_reset_window_is_not_overrun_before_the_platform_answers() {
    for db in common::stores("rate_limits").await {
        let one = SharedRateLimits::new(db.clone(), Platform::X, "user-1");
        let two = SharedRateLimits::new(db.clone(), Platform::X, "user-1");
        // X said the window allows three calls; it has since reset.
        one.observe_limit("create_tweet", 3).await;
        one.observe(
            "create_tweet",
            Some(0),
            Some(Utc::now() - TimeDelta::seconds(1)),
        )
        .await;
        for gate in [&one, &two, &one] {
            assert!(gate.acquire("create_tweet").await.is_ok());
        }
        // Three calls are on their way, none answered: a fourth would overrun the new window.
        let until = two.acquire("create_tweet").await.unwrap_err();
        assert!(until > Utc::now() && until <= Utc::now() + TimeDelta::seconds(2));
        // The first answer: X counted one call, and two more are on their way.
        let reset = Utc::now() + TimeDelta::minutes(15);
        one.observe("create_tweet", Some(2), Some(reset)).await;
        let until = two.acquire("create_tweet").await.unwrap_err();
        assert_eq!(until.timestamp_millis(), reset.timestamp_millis());
        // Another account's window is its own.
        let other = SharedRateLimits::new(db.clone(), Platform::X, "user-2");
        assert!(other.acquire("create_tweet").await.is_ok());
    }
}
