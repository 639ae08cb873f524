//! The audit at any point in time (`?as_of=`, `?until=`, a connection's history) and
//! read-your-writes (a job or connection is readable as soon as the command answered).
mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{spawn_app, Backend, TestApp, Twin};

const SOON: Duration = Duration::from_secs(30);

/// The job's history events of `event_type`, with the time each occurred.
fn occurred_at(history: &[Value], event_type: &str) -> String {
    history
        .iter()
        .find(|e| e["event_type"] == event_type)
        .and_then(|e| e["occurred_at"].as_str())
        .unwrap_or_else(|| panic!("no {event_type} in {history:?}"))
        .to_string()
}

/// `GET /jobs/{id}?as_of=` with the time URL-encoded (an offset's `+` would read as a space).
async fn job_as_of(app: &TestApp, user: &str, job_id: &str, as_of: &str) -> reqwest::Response {
    let url =
        reqwest::Url::parse_with_params(&app.api(&format!("/jobs/{job_id}")), [("as_of", as_of)])
            .unwrap();
    app.http
        .get(url)
        .bearer_auth(app.token(user))
        .send()
        .await
        .unwrap()
}

async fn history_until(app: &TestApp, user: &str, job_id: &str, until: &str) -> reqwest::Response {
    let url = reqwest::Url::parse_with_params(
        &app.api(&format!("/jobs/{job_id}/history")),
        [("until", until)],
    )
    .unwrap();
    app.http
        .get(url)
        .bearer_auth(app.token(user))
        .send()
        .await
        .unwrap()
}

async fn assert_problem(response: reqwest::Response, status: u16, kind: &str) {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], kind, "{problem}");
}

/// A job refused once by X, retried by its user, then published: asked for at the time of
/// each of its events, the job is as it stood then.
async fn as_of_follows_a_failed_and_retried_job(backend: Backend) {
    let app = spawn_app(backend).await;
    let connection = app.connect_x("alice", "alice_x").await;
    app.fault(
        Twin::X,
        "create_tweet",
        json!({"kind": "content_rejected", "detail": "not now"}),
        1,
    )
    .await;
    let job_id = app
        .publish("alice", &connection, json!({"text": "as it stood"}))
        .await;
    app.wait_for_status("alice", &job_id, "failed", SOON).await;
    let retried = app
        .post("alice", &format!("/jobs/{job_id}/retry"), json!({}))
        .await;
    assert_eq!(retried.status(), 202);
    let now = app
        .wait_for_status("alice", &job_id, "published", SOON)
        .await;
    let history = app.history_events("alice", &job_id).await;

    let created = occurred_at(&history, "JobScheduled");
    let before = (support::time(&created) - chrono::TimeDelta::milliseconds(1)).to_rfc3339();
    assert_problem(
        job_as_of(&app, "alice", &job_id, &before).await,
        404,
        "not-found",
    )
    .await;

    for (event_type, status, attempts) in [
        ("JobScheduled", "scheduled", 0),
        ("AttemptStarted", "publishing", 1),
        ("Failed", "failed", 1),
        ("RetryRequested", "retry_scheduled", 1),
        ("Published", "published", 2),
    ] {
        let at = occurred_at(&history, event_type);
        let response = job_as_of(&app, "alice", &job_id, &at).await;
        assert_eq!(response.status(), 200, "as of {event_type}");
        let then: Value = response.json().await.unwrap();
        assert_eq!(then["status"], status, "as of {event_type}: {then}");
        assert_eq!(then["attempts"], attempts, "as of {event_type}: {then}");
    }
    // The same time with another offset is the same instant.
    let failed_at = support::time(&occurred_at(&history, "Failed"));
    let in_paris = failed_at
        .with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap())
        .to_rfc3339();
    let then: Value = job_as_of(&app, "alice", &job_id, &in_paris)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(then["status"], "failed", "{then}");
    assert_eq!(then["last_error"]["class"], "permanent", "{then}");

    // After its last event, the fold says what the read model says.
    let latest: Value = job_as_of(&app, "alice", &job_id, "2100-01-01T00:00:00Z")
        .await
        .json()
        .await
        .unwrap();
    for field in [
        "status",
        "attempts",
        "post_id",
        "post_url",
        "post_ids",
        "max_attempts",
    ] {
        assert_eq!(latest[field], now[field], "{field}: {latest} vs {now}");
    }

    // The history cut at the failure ends with it.
    let cut: Value = history_until(&app, "alice", &job_id, &failed_at.to_rfc3339())
        .await
        .json()
        .await
        .unwrap();
    let types: Vec<&str> = cut["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["JobScheduled", "AttemptStarted", "AttemptFailed", "Failed"]
    );

    // Someone else's job is not there, at any time.
    assert_problem(
        job_as_of(&app, "bob", &job_id, &created).await,
        404,
        "not-found",
    )
    .await;
    assert_problem(
        history_until(&app, "bob", &job_id, &created).await,
        404,
        "not-found",
    )
    .await;

    // A time without an offset, or no time at all, is refused and changes nothing.
    for bad in ["2026-12-01T09:00:00", "yesterday", ""] {
        assert_problem(
            job_as_of(&app, "alice", &job_id, bad).await,
            400,
            "validation-error",
        )
        .await;
        assert_problem(
            history_until(&app, "alice", &job_id, bad).await,
            400,
            "validation-error",
        )
        .await;
    }
    assert_eq!(app.history_events("alice", &job_id).await, history);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_follows_a_failed_and_retried_job_embedded() {
    as_of_follows_a_failed_and_retried_job(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_follows_a_failed_and_retried_job_postgres_kafka() {
    as_of_follows_a_failed_and_retried_job(Backend::PostgresKafka).await;
}

/// A connection connected, refreshed (X answers 401 once) and disconnected: its history shows
/// the three, to its owner only, and no token.
async fn connection_history_shows_its_events_and_no_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let connection = app.connect_x("alice", "alice_x").await;
    app.fault(Twin::X, "create_tweet", json!({"kind": "expire_token"}), 1)
        .await;
    let job_id = app
        .publish("alice", &connection, json!({"text": "after a refresh"}))
        .await;
    app.wait_for_status("alice", &job_id, "published", SOON)
        .await;
    let disconnected = app
        .delete(
            "alice",
            &format!("/x/disconnect?connection_id={connection}"),
        )
        .await;
    assert_eq!(disconnected.status(), 200);

    let response = app
        .get("alice", &format!("/connections/{connection}/history"))
        .await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    let history: Value = serde_json::from_str(&body).unwrap();
    let types: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["Connected", "TokenRefreshed", "Disconnected"]);
    assert_eq!(history["events"][0]["data"]["username"], "alice_x");
    let issued = app.sandbox.x_state().tokens_issued;
    assert_eq!(issued.len(), 2, "the code exchange and one refresh");
    for tokens in issued {
        let secrets = std::iter::once(tokens.access_token).chain(tokens.refresh_token);
        for secret in secrets {
            assert!(!body.contains(&secret), "a token in the history: {body}");
        }
    }
    for word in ["token\"", "sealed", "secret"] {
        assert!(!body.contains(word), "{word} in the history: {body}");
    }

    assert_problem(
        app.get("bob", &format!("/connections/{connection}/history"))
            .await,
        404,
        "not-found",
    )
    .await;
    assert_problem(
        app.get("alice", "/connections/not-a-connection/history")
            .await,
        404,
        "not-found",
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_history_shows_its_events_and_no_token_embedded() {
    connection_history_shows_its_events_and_no_token(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_history_shows_its_events_and_no_token_postgres_kafka() {
    connection_history_shows_its_events_and_no_token(Backend::PostgresKafka).await;
}

/// Read-your-writes: right after its 202, each job reads as 200; right after a connect is
/// completed, the connection is listed.
async fn writes_are_readable_at_once(backend: Backend, jobs: usize) {
    let app = spawn_app(backend).await;
    for n in 0..3 {
        let user = format!("user{n}");
        let connection = app.connect_x(&user, &format!("user{n}_x")).await;
        let listed = app.connections(&user).await;
        assert!(
            listed
                .iter()
                .any(|c| c["connection_id"] == connection.as_str()),
            "connection {connection} not listed right after connecting: {listed:?}"
        );
    }
    let connection = app.connect_x("alice", "alice_x").await;
    for n in 0..jobs {
        let job_id = app
            .publish(
                "alice",
                &connection,
                json!({"text": format!("read me {n}")}),
            )
            .await;
        let response = app.get("alice", &format!("/jobs/{job_id}")).await;
        assert_eq!(response.status(), 200, "job {n} right after its 202");
        let job: Value = response.json().await.unwrap();
        assert_eq!(job["job_id"], job_id.as_str());
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_readable_at_once_embedded() {
    writes_are_readable_at_once(Backend::Embedded, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_readable_at_once_postgres_kafka() {
    writes_are_readable_at_once(Backend::PostgresKafka, 100).await;
}
