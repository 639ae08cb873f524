//! Two worker processes on Postgres + Kafka keep a platform's limits together (ARCHITECTURE
//! invariant 6): X's per-user windows, read from `x-rate-limit-*`, and a Facebook Page's
//! business-use-case budget, read from `X-Business-Use-Case-Usage`. Each test asserts on what
//! the twin received, so a gate that let the workers overrun the limit fails it.
mod support;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use herald_sandbox::SandboxConfig;
use serde_json::{json, Value};
use support::worker::SplitApp;
use support::{time, Backend};

/// How long restarted workers may take to join the Kafka consumer groups, plus the windows.
const PATIENCE: Duration = Duration::from_secs(240);
const LOG: &str = "info,herald_infrastructure=debug";

async fn publish(app: &support::TestApp, connection: &str, content: Value) -> String {
    let response = app
        .post(
            "alice",
            "/publish",
            // The default retry budget: waiting for a window spends none of it.
            json!({"connection_ids": [connection], "content": content}),
        )
        .await;
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
    let body: Value = response.json().await.unwrap();
    body["jobs"][0]["job_id"].as_str().unwrap().to_string()
}

/// X answers every call with `x-rate-limit-limit`, `-remaining` and `-reset` for the user's window
/// on that endpoint (`POST /2/tweets`: 100 per 15 minutes; here 3 per 4 seconds). Two workers,
/// three jobs at a time each, publish ten posts for one account: every post is published once
/// and X never answers 429. The one thing the headers cannot predict is the first call ever,
/// before any answer: the first post goes alone. After that six jobs may be on their way at once,
/// twice the window, and the gate holds them to what X said is left, and to the window's size
/// once it has reset and before X has answered on the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_keep_xs_per_user_window_together() {
    const POSTS: usize = 10;
    let mut sandbox = SandboxConfig::default();
    sandbox.x.rate_limits.create_tweet = 3;
    sandbox.x.rate_limit_window = Duration::from_secs(4);
    let mut split = SplitApp::start_with(Backend::PostgresKafka, sandbox).await;
    let connection = split.app.connect_x("alice", "x_windows").await;
    let workers = split
        .spawn_workers(2, LOG, |config| config.worker_concurrency = 3)
        .await;
    let app = &split.app;
    let first = publish(app, &connection, json!({"text": "windowed #0"})).await;
    app.wait_for_status("alice", &first, "published", PATIENCE)
        .await;
    let mut jobs = vec![first];
    for i in 1..POSTS {
        jobs.push(publish(app, &connection, json!({"text": format!("windowed #{i}")})).await);
    }
    let published = workers
        .settle(app, "alice", &jobs, PATIENCE, |job| {
            assert_ne!(job["status"], "failed", "{job}");
            job["status"] == "published"
        })
        .await;

    let tweets = app.x_requests("POST", "/2/tweets");
    assert!(
        tweets.iter().all(|r| r.status != Some(429)),
        "X refused calls for exceeding the window: {tweets:?}"
    );
    assert_eq!(tweets.len(), POSTS, "one call per post: {tweets:?}");
    for i in 0..POSTS {
        assert_eq!(app.posts_with_text(&format!("windowed #{i}")), 1);
    }
    // The window held the workers back: ten calls took at least four windows, and some jobs
    // waited for a reset.
    let at: Vec<DateTime<Utc>> = tweets.iter().map(|r| time(&r.at)).collect();
    assert!(at[POSTS - 1] - at[0] >= TimeDelta::seconds(8), "{at:?}");
    assert!(
        published
            .iter()
            .any(|j| j["limit_waits"].as_u64() > Some(0)),
        "no job ever waited for the window: {published:?}"
    );
    // Both workers took part: each posted, or was held back by the window the other filled
    // (which of them wins the claims once a window reopens is up to the scheduler).
    workers.assert_each_logged_one_of(&["post created", "attempt failed"]);
    drop(workers);
    split.stop().await;
}

/// A Facebook Page's calls count against its business-use-case budget, whatever the endpoint;
/// Meta reports it in `X-Business-Use-Case-Usage` and, once it reaches 100 %, says in
/// `estimated_time_to_regain_access` how many minutes until the Page may call again, refusing
/// calls until then with error 80001. Two workers publish four photo posts (the photo, the post,
/// a look-up of its permalink: three endpoints) to one Page whose budget is seven calls a window:
/// after the call that spends it, neither worker calls until Meta said, on any endpoint; at most
/// the one call the other worker already had on its way is refused, and every post is published
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_wait_for_a_pages_usage_to_come_back() {
    const POSTS: usize = 4;
    let mut sandbox = SandboxConfig::default();
    sandbox.meta.call_budget = 7;
    sandbox.meta.usage_window = Duration::from_secs(20);
    let mut split = SplitApp::start_with(Backend::PostgresKafka, sandbox).await;
    let page = split
        .app
        .connect_facebook_pages("alice", "meta_usage")
        .await
        .remove(0);
    let workers = split
        .spawn_workers(2, LOG, |config| config.worker_concurrency = 1)
        .await;
    let app = &split.app;
    let photo = json!({
        "url": format!("{}/media/usage.jpg?bytes=3000", app.sandbox.base_url()),
        "kind": "image",
        "mime_type": "image/jpeg",
    });
    let mut jobs = Vec::new();
    for i in 0..POSTS {
        let content = json!({"text": format!("usage #{i}"), "media": [photo]});
        jobs.push(publish(app, &page, content).await);
    }
    workers
        .settle(app, "alice", &jobs, PATIENCE, |job| {
            assert_ne!(job["status"], "failed", "{job}");
            job["status"] == "published"
        })
        .await;

    let state = app.sandbox.meta_state();
    for i in 0..POSTS {
        let copies = state
            .page_posts
            .iter()
            .filter(|p| p.message.as_deref() == Some(&format!("usage #{i}")))
            .count();
        assert_eq!(copies, 1, "usage #{i}");
    }
    let events: Vec<_> = state
        .usage_events
        .iter()
        // The Pages' budgets: only the one published to is spent.
        .filter(|e| e.owner != "app")
        .collect();
    let spent: Vec<DateTime<Utc>> = events
        .iter()
        .filter(|e| !e.refused)
        .map(|e| time(&e.at))
        .collect();
    let refused = events.iter().filter(|e| e.refused).count();
    assert!(!spent.is_empty(), "the budget was never spent: {events:?}");
    assert!(
        refused <= spent.len(),
        "a storm of throttling errors: {refused} refused for {} spent budgets: {events:?}",
        spent.len()
    );
    // After each spent budget, nothing but a call already on its way until the minute Meta
    // named has passed.
    for at in &spent {
        let quiet_from = *at + TimeDelta::seconds(2);
        let quiet_until = *at + TimeDelta::seconds(60);
        let during: Vec<_> = state
            .requests
            .iter()
            .filter(|r| (quiet_from..quiet_until).contains(&time(&r.at)))
            .collect();
        assert!(
            during.is_empty(),
            "called Meta while the Page waited: {during:?}"
        );
    }
    workers.assert_each_logged_one_of(&["post created", "attempt failed"]);
    drop(workers);
    split.stop().await;
}
