//! Retries are deliberate (ARCHITECTURE invariant 7) and there is no blind re-publish
//! (invariant 4): each platform failure the sandbox can inject, end to end on the production
//! path (Postgres + Kafka), a few on the embedded default too.
mod support;

use std::time::Duration;

use herald_domain::retry::RetryPolicy;
use serde_json::{json, Value};
use support::Twin;
use support::{event_data, eventually, spawn_app, time, Backend, TestApp};

/// Generous: retries wait for real backoff and Retry-After times.
const SOON: Duration = Duration::from_secs(60);
const CREATE_TWEET: (&str, &str) = ("POST", "/2/tweets");
const TOKEN: (&str, &str) = ("POST", "/2/oauth2/token");

fn events_of<'a>(history: &'a [Value], kind: &str) -> Vec<&'a Value> {
    history.iter().filter(|e| e["event_type"] == kind).collect()
}

fn types(history: &[Value]) -> Vec<&str> {
    history
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect()
}

fn statuses(requests: &[herald_sandbox::RequestRecord]) -> Vec<Option<u16>> {
    requests.iter().map(|r| r.status).collect()
}

async fn a_429_is_retried_no_earlier_than_retry_after(app: &TestApp) {
    let connection = app.connect_x("alice", "alice_x").await;
    app.fault(
        Twin::X,
        "create_tweet",
        json!({"kind": "rate_limited", "retry_after_secs": 3}),
        1,
    )
    .await;
    let job_id = app
        .publish("alice", &connection, json!({"text": "after the window"}))
        .await;
    let job = app
        .wait_for_status("alice", &job_id, "published", SOON)
        .await;
    assert_eq!(job["attempts"], 2, "{job}");
    assert_eq!(app.posts_with_text("after the window"), 1);

    let history = app.history_events("alice", &job_id).await;
    assert_eq!(
        types(&history),
        [
            "JobScheduled",
            "AttemptStarted",
            "AttemptFailed",
            "RetryScheduled",
            "AttemptStarted",
            "Published"
        ]
    );
    let failed = event_data(events_of(&history, "AttemptFailed")[0]);
    assert_eq!(failed["class"], "rate_limited", "{failed}");
    assert_eq!(failed["code"], "http_429", "{failed}");

    let creates = app.x_requests(CREATE_TWEET.0, CREATE_TWEET.1);
    assert_eq!(
        statuses(&creates),
        [Some(429), Some(201)],
        "one refused call, then one that worked: {creates:?}"
    );
    let refused_at = time(&creates[0].at);
    let not_before = refused_at + chrono::Duration::seconds(3);
    for later in &creates[1..] {
        assert!(
            time(&later.at) >= not_before,
            "create_tweet sent at {} although X said to wait until {not_before} (429 at {refused_at})",
            later.at
        );
    }
    let retry_at = time(failed["retry_at"].as_str().expect("a retry time"));
    assert!(
        retry_at >= not_before,
        "retry scheduled for {retry_at}, before Retry-After ({not_before})"
    );
    let second_start = time(
        event_data(events_of(&history, "AttemptStarted")[1])["at"]
            .as_str()
            .unwrap(),
    );
    assert!(second_start >= retry_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_waits_for_retry_after_then_publishes() {
    let app = spawn_app(Backend::PostgresKafka).await;
    a_429_is_retried_no_earlier_than_retry_after(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_waits_for_retry_after_then_publishes_embedded() {
    let app = spawn_app(Backend::Embedded).await;
    a_429_is_retried_no_earlier_than_retry_after(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_with_exponential_backoff() {
    let app = spawn_app(Backend::PostgresKafka).await;
    let connection = app.connect_x("alice", "alice_x").await;
    app.fault(
        Twin::X,
        "create_tweet",
        json!({"kind": "server_error", "status": 503}),
        2,
    )
    .await;
    let job_id = app
        .publish("alice", &connection, json!({"text": "third time lucky"}))
        .await;
    let job = app
        .wait_for_status("alice", &job_id, "published", SOON)
        .await;
    assert_eq!(job["attempts"], 3, "{job}");
    assert_eq!(app.posts_with_text("third time lucky"), 1);
    let creates = app.x_requests(CREATE_TWEET.0, CREATE_TWEET.1);
    assert_eq!(
        statuses(&creates),
        [Some(503), Some(503), Some(201)],
        "{creates:?}"
    );

    let history = app.history_events("alice", &job_id).await;
    let failures = events_of(&history, "AttemptFailed");
    let starts = events_of(&history, "AttemptStarted");
    assert_eq!(failures.len(), 2, "{:?}", types(&history));
    assert_eq!(starts.len(), 3, "{:?}", types(&history));
    let policy = RetryPolicy::default();
    for (i, failure) in failures.iter().enumerate() {
        let failure = event_data(failure);
        let attempt_number = failure["attempt_number"].as_u64().unwrap() as u32;
        assert_eq!(attempt_number, i as u32 + 1);
        assert_eq!(failure["class"], "retryable", "{failure}");
        assert_eq!(failure["code"], "http_503", "{failure}");
        let failed_at = time(failure["at"].as_str().unwrap());
        let retry_at = time(failure["retry_at"].as_str().expect("a retry time"));
        let minimum = policy.backoff(attempt_number, 0.0);
        assert!(
            retry_at >= failed_at + minimum,
            "attempt {attempt_number} failed at {failed_at}, retry at {retry_at}: less than the policy minimum {minimum}"
        );
        let next_start = time(event_data(starts[i + 1])["at"].as_str().unwrap());
        assert!(
            next_start >= retry_at,
            "attempt {} started at {next_start}, before its retry time {retry_at}",
            i + 2
        );
        // The platform saw the next call no earlier either (its clock keeps milliseconds).
        let next_call = time(&creates[i + 1].at);
        assert!(
            next_call + chrono::Duration::milliseconds(1) >= retry_at,
            "create_tweet #{} reached X at {next_call}, before the retry time {retry_at}",
            i + 2
        );
    }
    // The minimum backoff grows with each attempt.
    assert!(policy.backoff(2, 0.0) > policy.backoff(1, 0.0));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_content_fails_at_once_with_an_actionable_message() {
    let app = spawn_app(Backend::PostgresKafka).await;
    let connection = app.connect_x("alice", "alice_x").await;
    let detail = "This post violates the rules about platform manipulation and spam.";
    app.fault(
        Twin::X,
        "create_tweet",
        json!({"kind": "content_rejected", "detail": detail}),
        1,
    )
    .await;
    let job_id = app
        .publish("alice", &connection, json!({"text": "buy now buy now"}))
        .await;
    let job = app.wait_for_status("alice", &job_id, "failed", SOON).await;
    assert_eq!(job["attempts"], 1, "{job}");
    assert_eq!(job["last_error"]["class"], "permanent", "{job}");
    let message = job["last_error"]["message"].as_str().unwrap();
    assert!(
        message.contains(detail),
        "the user is told what X objected to: {message}"
    );
    assert_eq!(
        app.history("alice", &job_id).await,
        ["JobScheduled", "AttemptStarted", "AttemptFailed", "Failed"]
    );
    assert_eq!(app.x_requests(CREATE_TWEET.0, CREATE_TWEET.1).len(), 1);
    assert_eq!(app.posts_with_text("buy now buy now"), 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_post_fails_once_and_says_to_change_the_text() {
    let app = spawn_app(Backend::PostgresKafka).await;
    let connection = app.connect_x("alice", "alice_x").await;
    let first = app
        .publish("alice", &connection, json!({"text": "say it once"}))
        .await;
    app.wait_for_status("alice", &first, "published", SOON)
        .await;
    let second = app
        .publish("alice", &connection, json!({"text": "say it once"}))
        .await;
    let job = app.wait_for_status("alice", &second, "failed", SOON).await;
    assert_eq!(job["attempts"], 1, "{job}");
    assert_eq!(job["last_error"]["class"], "permanent", "{job}");
    assert_eq!(job["last_error"]["code"], "duplicate_post", "{job}");
    let message = job["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("change the text"), "{message}");
    assert_eq!(app.posts_with_text("say it once"), 1);
    assert_eq!(
        app.x_requests(CREATE_TWEET.0, CREATE_TWEET.1).len(),
        2,
        "one call per job, no retry of a permanent failure"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refreshed_once_and_the_post_goes_out() {
    let app = spawn_app(Backend::PostgresKafka).await;
    let connection = app.connect_x("alice", "alice_x").await;
    let issued_at_connect = app.sandbox.x_state().tokens_issued.len();
    assert_eq!(issued_at_connect, 1);
    app.fault(Twin::X, "create_tweet", json!({"kind": "expire_token"}), 1)
        .await;
    let job_id = app
        .publish("alice", &connection, json!({"text": "fresh token"}))
        .await;
    let job = app
        .wait_for_status("alice", &job_id, "published", SOON)
        .await;
    assert_eq!(job["attempts"], 1, "{job}");
    assert_eq!(app.posts_with_text("fresh token"), 1);
    let state = app.sandbox.x_state();
    assert_eq!(
        state.tokens_issued.len(),
        issued_at_connect + 1,
        "exactly one refresh"
    );
    assert_eq!(
        app.x_requests(TOKEN.0, TOKEN.1).len(),
        2,
        "the code exchange and one refresh"
    );
    let creates = app.x_requests(CREATE_TWEET.0, CREATE_TWEET.1);
    assert_eq!(statuses(&creates), [Some(401), Some(201)], "{creates:?}");
    assert_eq!(
        app.history("alice", &job_id).await,
        ["JobScheduled", "AttemptStarted", "Published"]
    );
    let connections = app.connections("alice").await;
    assert_eq!(connections.len(), 1);
    assert_eq!(connections[0]["connection_id"], connection.as_str());
    assert_eq!(connections[0]["status"], "active", "{}", connections[0]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_fails_the_job_and_expires_the_connection_without_a_retry_storm() {
    let app = spawn_app(Backend::PostgresKafka).await;
    let connection = app.connect_x("alice", "alice_x").await;
    app.fault(Twin::X, "create_tweet", json!({"kind": "expire_token"}), 1)
        .await;
    app.fault(Twin::X, "token", json!({"kind": "revoke_grant"}), 1)
        .await;
    let job_id = app
        .publish("alice", &connection, json!({"text": "never posted"}))
        .await;
    let job = app.wait_for_status("alice", &job_id, "failed", SOON).await;
    assert_eq!(
        job["last_error"]["class"], "reauthorization_required",
        "{job}"
    );
    assert!(
        !job["last_error"]["message"].as_str().unwrap().is_empty(),
        "{job}"
    );
    let view = eventually("the connection shows as expired", SOON, || async {
        let connections = app.connections("alice").await;
        connections
            .into_iter()
            .find(|c| c["connection_id"] == connection.as_str() && c["status"] == "expired")
    })
    .await;
    let reason = view["status_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("Connect the account again"),
        "the reason says what to do: {view}"
    );

    // Give a storm the time to show itself: still one refresh, one create.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        app.x_requests(TOKEN.0, TOKEN.1).len(),
        2,
        "the code exchange and exactly one refresh attempt"
    );
    assert_eq!(app.x_requests(CREATE_TWEET.0, CREATE_TWEET.1).len(), 1);
    assert_eq!(app.posts_with_text("never posted"), 0);
    let job: Value = app
        .get("alice", &format!("/jobs/{job_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(job["status"], "failed");
    assert_eq!(job["attempts"], 1, "{job}");
    app.stop().await;
}

async fn a_post_that_timed_out_after_success_is_reconciled_not_resent(app: &TestApp) {
    let connection = app.connect_x("alice", "alice_x").await;
    // The test config gives X requests 2 s; the sandbox answers after 5 s.
    assert_eq!(
        app.config.platforms.get("X_REQUEST_TIMEOUT_SECS"),
        Some("2")
    );
    app.fault(
        Twin::X,
        "create_tweet",
        json!({"kind": "timeout_after_success", "secs": 5}),
        1,
    )
    .await;
    let job_id = app
        .publish("alice", &connection, json!({"text": "did it go out?"}))
        .await;
    let job = app
        .wait_for_status("alice", &job_id, "published", SOON)
        .await;
    let history = app.history_reconciled("alice", &job_id).await;
    assert_eq!(history.last().map(String::as_str), Some("Published"));
    let posts: Vec<_> = app
        .sandbox
        .x_state()
        .posts
        .into_iter()
        .filter(|p| p.text == "did it go out?")
        .collect();
    assert_eq!(posts.len(), 1, "exactly one post on the platform");
    assert_eq!(job["post_id"], posts[0].id.as_str());
    assert_eq!(
        app.x_requests(CREATE_TWEET.0, CREATE_TWEET.1).len(),
        1,
        "nothing was sent again"
    );
}

/// The post went out but its answer was lost, and the lookup fails twice: the job records
/// each failed lookup, waits its backoff, and ends with the one post, never sending again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_that_fails_is_recorded_and_retried_never_resent() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_x("alice", "alice_x").await;
    app.fault(
        Twin::X,
        "create_tweet",
        json!({"kind": "timeout_after_success", "secs": 5}),
        1,
    )
    .await;
    app.fault(
        Twin::X,
        "user_tweets",
        json!({"kind": "server_error", "status": 503}),
        2,
    )
    .await;
    let job_id = app
        .publish("alice", &connection, json!({"text": "was it posted?"}))
        .await;
    let job = app
        .wait_for_status("alice", &job_id, "published", SOON)
        .await;
    let history = app.history_reconciled("alice", &job_id).await;
    let failed_lookups = history
        .iter()
        .filter(|t| *t == "ReconciliationFailed")
        .count();
    assert_eq!(
        failed_lookups, 2,
        "each failed lookup is recorded: {history:?}"
    );
    assert_eq!(
        history.iter().filter(|t| *t == "AttemptStarted").count(),
        1,
        "no new attempt while the outcome is unknown: {history:?}"
    );
    let posts: Vec<_> = app
        .sandbox
        .x_state()
        .posts
        .into_iter()
        .filter(|p| p.text == "was it posted?")
        .collect();
    assert_eq!(posts.len(), 1, "exactly one post on the platform");
    assert_eq!(job["post_id"], posts[0].id.as_str());
    assert_eq!(app.x_requests(CREATE_TWEET.0, CREATE_TWEET.1).len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_after_success_is_reconciled_into_one_post() {
    let app = spawn_app(Backend::PostgresKafka).await;
    a_post_that_timed_out_after_success_is_reconciled_not_resent(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_after_success_is_reconciled_into_one_post_embedded() {
    let app = spawn_app(Backend::Embedded).await;
    a_post_that_timed_out_after_success_is_reconciled_not_resent(&app).await;
    app.stop().await;
}
