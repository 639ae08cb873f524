//! The analytics read model (issue 12): after a scripted run with successes, a 429, a 5xx,
//! rejected content and a cancel, the figures equal what the jobs list and each job's history
//! say when counted by hand; a user sees only their own, an operator everyone's; bad queries get
//! problem+json; and `herald replay` gives the same answers (the tables themselves are compared
//! row by row in `replay.rs`).
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use herald_api::config::Role;
use herald_sandbox::SandboxConfig;
use serde_json::{json, Value};
use support::{event_data, eventually, spawn_app_configured, time, Backend, TestApp, Twin};

/// Generous: retries wait for real backoff and Retry-After times.
const SOON: Duration = Duration::from_secs(60);
const OPERATOR: &str = "ops";

async fn analytics(app: &TestApp, user: &str, path_and_query: &str) -> reqwest::Response {
    app.http
        .get(format!("{}/api/v1/analytics{path_and_query}", app.url))
        .bearer_auth(app.token(user))
        .send()
        .await
        .unwrap()
}

async fn analytics_json(app: &TestApp, user: &str, path_and_query: &str) -> Value {
    let response = analytics(app, user, path_and_query).await;
    assert_eq!(response.status(), 200, "{path_and_query}");
    response.json().await.unwrap()
}

/// Publishes `text` to `connection` and waits for the job to reach `status`.
async fn job_ending(
    app: &TestApp,
    user: &str,
    connection: &str,
    text: &str,
    status: &str,
) -> String {
    let job_id = app.publish(user, connection, json!({ "text": text })).await;
    app.wait_for_status(user, &job_id, status, SOON).await;
    job_id
}

/// One job of each outcome for alice, one success for bob. Faults apply to the next calls to
/// X whoever makes them, so the jobs run one after the other.
async fn scripted_run(app: &TestApp) {
    let alice = app.connect_x("alice", "alice_x").await;
    let bob = app.connect_x("bob", "bob_x").await;
    job_ending(app, "alice", &alice, "straight through", "published").await;
    app.fault(
        Twin::X,
        "create_tweet",
        json!({"kind": "rate_limited", "retry_after_secs": 1}),
        1,
    )
    .await;
    job_ending(app, "alice", &alice, "after a wait", "published").await;
    app.fault(
        Twin::X,
        "create_tweet",
        json!({"kind": "server_error", "status": 503}),
        1,
    )
    .await;
    job_ending(app, "alice", &alice, "after an outage", "published").await;
    app.fault(
        Twin::X,
        "create_tweet",
        json!({"kind": "content_rejected", "detail": "spam"}),
        1,
    )
    .await;
    job_ending(app, "alice", &alice, "buy now", "failed").await;
    let publish_at = (chrono::Utc::now() + chrono::Duration::hours(5)).to_rfc3339();
    let scheduled: Value = app
        .post(
            "alice",
            "/schedule",
            json!({"connection_ids": [alice], "content": {"text": "never"}, "publish_at": publish_at}),
        )
        .await
        .json()
        .await
        .unwrap();
    let cancelled = scheduled["jobs"][0]["job_id"].as_str().unwrap().to_string();
    assert_eq!(
        app.delete("alice", &format!("/jobs/{cancelled}"))
            .await
            .status(),
        200
    );
    app.wait_for_status("alice", &cancelled, "cancelled", SOON)
        .await;
    job_ending(app, "bob", &bob, "bob's own", "published").await;
}

/// An error class and code.
type ErrorKey = (String, String);
type Time = chrono::DateTime<chrono::Utc>;
/// (class, code) → (failures, latest message, its job).
type ErrorFigures = BTreeMap<ErrorKey, (i64, String, String)>;

/// A user's figures counted by hand from `GET /jobs` and each job's history.
#[derive(Debug, Default, PartialEq)]
struct ByHand {
    counts: Value,
    errors: ErrorFigures,
}

async fn by_hand(app: &TestApp, user: &str) -> ByHand {
    let jobs: Value = app.get(user, "/jobs?limit=500").await.json().await.unwrap();
    let jobs = jobs["jobs"].as_array().unwrap();
    let with_status = |status: &str| jobs.iter().filter(|j| j["status"] == status).count();
    let sum = |field: &str| jobs.iter().map(|j| j[field].as_i64().unwrap()).sum::<i64>();
    let mut retries = 0;
    // (class, code) → (failures, latest failure's time, message and job).
    let mut latest: BTreeMap<ErrorKey, (i64, Time, String, String)> = BTreeMap::new();
    for job in jobs {
        let job_id = job["job_id"].as_str().unwrap();
        for event in app.history_events(user, job_id).await {
            match event["event_type"].as_str().unwrap() {
                "RetryScheduled" => retries += 1,
                "AttemptFailed" => {
                    let data = event_data(&event);
                    let key = (
                        data["class"].as_str().unwrap().to_string(),
                        data["code"].as_str().unwrap().to_string(),
                    );
                    let at = time(data["at"].as_str().unwrap());
                    let message = data["message"].as_str().unwrap().to_string();
                    let entry =
                        latest
                            .entry(key)
                            .or_insert((0, at, message.clone(), job_id.into()));
                    entry.0 += 1;
                    if (at, job_id) > (entry.1, entry.3.as_str()) {
                        (entry.1, entry.2, entry.3) = (at, message, job_id.into());
                    }
                }
                _ => {}
            }
        }
    }
    ByHand {
        counts: json!({
            "accepted": jobs.len(),
            "published": with_status("published"),
            "failed": with_status("failed"),
            "cancelled": with_status("cancelled"),
            "attempts": sum("attempts"),
            "retries": retries,
            "limit_waits": sum("limit_waits"),
            // Text posts upload nothing.
            "bytes_uploaded": 0,
        }),
        errors: latest
            .into_iter()
            .map(|(key, (count, _, message, job_id))| (key, (count, message, job_id)))
            .collect(),
    }
}

fn errors_of(answer: &Value) -> ErrorFigures {
    answer["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                (
                    e["class"].as_str().unwrap().to_string(),
                    e["code"].as_str().unwrap().to_string(),
                ),
                (
                    e["count"].as_i64().unwrap(),
                    e["latest_message"].as_str().unwrap().to_string(),
                    e["example_job_id"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

/// The counters of every bucket of a timeseries, added up.
fn timeseries_total(answer: &Value) -> Value {
    let mut total = BTreeMap::<String, i64>::new();
    for bucket in answer["buckets"].as_array().unwrap() {
        for (name, value) in bucket["counts"].as_object().unwrap() {
            *total.entry(name.clone()).or_default() += value.as_i64().unwrap();
        }
    }
    json!(total)
}

/// Every answer an operator gets, to compare before and after a replay.
async fn operator_answers(app: &TestApp) -> Vec<Value> {
    let mut answers = Vec::new();
    for path in [
        "/summary",
        "/summary?user_id=alice",
        "/timeseries?bucket=hour",
        "/errors",
    ] {
        answers.push(analytics_json(app, OPERATOR, path).await);
    }
    answers
}

async fn analytics_equal_the_jobs_counted_by_hand(backend: Backend) {
    let app = spawn_app_configured(backend, SandboxConfig::default(), Role::All, |config| {
        config.operator_subjects = format!("someone-else, {OPERATOR}");
    })
    .await;
    let started = chrono::Utc::now() - chrono::Duration::hours(1);
    scripted_run(&app).await;
    let alice = by_hand(&app, "alice").await;
    let bob = by_hand(&app, "bob").await;
    assert_eq!(alice.counts["accepted"], 5, "{alice:?}");
    assert_eq!(alice.counts["limit_waits"], 1, "{alice:?}");
    assert_eq!(
        alice.errors.len(),
        3,
        "a 429, a 503 and rejected content: {alice:?}"
    );

    // The projection follows the log: wait until it has seen the whole run.
    eventually("analytics caught up with the jobs", SOON, || {
        let app = &app;
        let expected = &alice.counts;
        async move {
            let summary = analytics_json(app, "alice", "/summary").await;
            (summary["counts"] == *expected).then_some(())
        }
    })
    .await;
    eventually("bob's analytics caught up", SOON, || {
        let app = &app;
        let expected = &bob.counts;
        async move {
            let summary = analytics_json(app, "bob", "/summary").await;
            (summary["counts"] == *expected).then_some(())
        }
    })
    .await;

    let range = format!(
        "from={}&to={}",
        urlencode(&started.to_rfc3339()),
        urlencode(&(chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339())
    );
    let summary = analytics_json(&app, "alice", &format!("/summary?{range}")).await;
    assert_eq!(summary["counts"], alice.counts, "{summary}");
    assert_eq!(summary["failed"], 1, "{summary}");
    assert_eq!(summary["rate_limit_waits"], 1, "{summary}");
    assert_eq!(
        summary["success_rate"], 0.75,
        "3 published of 4 ended: {summary}"
    );
    for latency in ["accepted_to_published_ms", "due_to_published_ms"] {
        let percentiles = &summary["latency"][latency];
        assert_eq!(percentiles["count"], 3, "{summary}");
        let (p50, p95, p99) = (
            percentiles["p50"].as_i64().unwrap(),
            percentiles["p95"].as_i64().unwrap(),
            percentiles["p99"].as_i64().unwrap(),
        );
        assert!(0 <= p50 && p50 <= p95 && p95 <= p99, "{summary}");
    }
    for bucket in ["hour", "day"] {
        let series = analytics_json(
            &app,
            "alice",
            &format!("/timeseries?bucket={bucket}&{range}"),
        )
        .await;
        assert_eq!(timeseries_total(&series), alice.counts, "{series}");
    }
    let errors = analytics_json(&app, "alice", &format!("/errors?{range}&platform=x")).await;
    assert_eq!(errors_of(&errors), alice.errors, "{errors}");
    let long_ago = analytics_json(
        &app,
        "alice",
        "/summary?from=2020-01-01T00:00:00Z&to=2020-02-01T00:00:00%2B01:00",
    )
    .await;
    assert_eq!(long_ago["counts"]["accepted"], 0, "{long_ago}");

    // Bob sees his own figures only, and may not ask for alice's.
    let errors = analytics_json(&app, "bob", "/errors").await;
    assert!(errors_of(&errors).is_empty(), "{errors}");
    let refused = analytics(&app, "bob", "/summary?user_id=alice").await;
    assert_eq!(refused.status(), 403);

    // An operator sees everyone, or one user.
    let everyone = analytics_json(&app, OPERATOR, "/summary").await;
    assert_eq!(everyone["counts"]["accepted"], 6, "{everyone}");
    assert_eq!(everyone["counts"]["published"], 4, "{everyone}");
    let just_alice = analytics_json(&app, OPERATOR, "/summary?user_id=alice").await;
    assert_eq!(just_alice["counts"], alice.counts, "{just_alice}");

    // Rebuilt from the events, the read model answers the same.
    let before = operator_answers(&app).await;
    herald_api::replay::replay(app.herald()).await.unwrap();
    assert_eq!(operator_answers(&app).await, before);
    app.stop().await;
}

/// Enough percent-encoding for RFC 3339 times in a query string (`+` would read as a space).
fn urlencode(value: &str) -> String {
    value.replace('+', "%2B").replace(':', "%3A")
}

async fn bad_queries_get_problem_json(backend: Backend) {
    let app = spawn_app_configured(backend, SandboxConfig::default(), Role::All, |_| {}).await;
    for path in [
        "/summary?from=2026-12-01T09:00:00",
        "/summary?from=yesterday",
        "/summary?from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z",
        "/summary?platform=myspace",
        "/summary?connection_id=nope",
        "/summary?bucket=hour",
        "/timeseries?bucket=week",
        "/errors?colour=blue",
    ] {
        let response = analytics(&app, "alice", path).await;
        assert_eq!(response.status(), 400, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["status"], 400, "{path}: {problem}");
        assert!(problem["type"].is_string(), "{path}: {problem}");
    }
    let unauthenticated = app
        .http
        .get(format!("{}/api/v1/analytics/summary", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_equal_the_jobs_counted_by_hand_embedded() {
    analytics_equal_the_jobs_counted_by_hand(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_equal_the_jobs_counted_by_hand_on_postgres() {
    analytics_equal_the_jobs_counted_by_hand(Backend::PostgresKafka).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_analytics_queries_get_problem_json_embedded() {
    bad_queries_get_problem_json(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_analytics_queries_get_problem_json_on_postgres() {
    bad_queries_get_problem_json(Backend::PostgresKafka).await;
}
