//! A job travels the whole path on both backends: API → aggregate → store + outbox → log →
//! scheduler → publisher → sandbox X → projections → query API.
mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{spawn_app, Backend, TestApp, Twin};

const SOON: Duration = Duration::from_secs(15);

async fn a_post_is_published_once_and_its_history_is_complete(app: &TestApp) {
    let connection = app.connect_x("alice", "alice_x").await;
    let job_id = app
        .publish(
            "alice",
            &connection,
            json!({"text": "Hello from the spine"}),
        )
        .await;
    let job = app
        .wait_for_status("alice", &job_id, "published", SOON)
        .await;

    let posts = app.sandbox.x_state().posts;
    let matching: Vec<_> = posts
        .iter()
        .filter(|p| p.text == "Hello from the spine")
        .collect();
    assert_eq!(matching.len(), 1, "exactly one post on the platform");
    assert_eq!(job["post_id"], matching[0].id.as_str());
    assert!(job["post_url"].as_str().unwrap().ends_with(&matching[0].id));
    assert_eq!(job["attempts"], 1);
    assert_eq!(
        app.history("alice", &job_id).await,
        ["JobScheduled", "AttemptStarted", "Published"]
    );

    let listed: Value = app
        .get("alice", "/jobs?status=published&platform=x")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 1);
    let connections: Value = app.get("alice", "/connections").await.json().await.unwrap();
    assert_eq!(connections["connections"][0]["status"], "active");
    assert_eq!(connections["connections"][0]["username"], "alice_x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_default_publishes_a_post() {
    let app = spawn_app(Backend::Embedded).await;
    a_post_is_published_once_and_its_history_is_complete(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_kafka_publish_a_post() {
    let app = spawn_app(Backend::PostgresKafka).await;
    a_post_is_published_once_and_its_history_is_complete(&app).await;
    app.stop().await;
}

async fn bad_input_is_refused_with_a_problem_and_stores_nothing(app: &TestApp) {
    let connection = app.connect_x("alice", "alice_x").await;
    let cases = [
        (
            json!({"connection_ids": [connection], "content": {"text": "a".repeat(281)}}),
            422,
            "content-invalid",
        ),
        (
            json!({"connection_ids": [connection], "content": {"text": "vote", "poll": {"options": ["only"], "duration_minutes": 60}}}),
            422,
            "content-invalid",
        ),
        (
            json!({"connection_ids": [uuid::Uuid::new_v4()], "content": {"text": "hi"}}),
            404,
            "not-found",
        ),
        (
            json!({"connection_ids": [], "content": {"text": "hi"}}),
            400,
            "validation-error",
        ),
        (
            json!({"connection_ids": [connection], "content": {"text": "hi"}, "surprise": 1}),
            400,
            "validation-error",
        ),
    ];
    for (body, status, kind) in cases {
        let response = app.post("alice", "/publish", body.clone()).await;
        assert_eq!(response.status(), status, "{body}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], kind, "{problem}");
        assert!(!problem["detail"].as_str().unwrap().is_empty());
    }
    let no_offset = app
        .post(
            "alice",
            "/schedule",
            json!({"connection_ids": [connection], "content": {"text": "later"}, "publish_at": "2030-01-01T10:00:00"}),
        )
        .await;
    assert_eq!(no_offset.status(), 400);
    let unknown_platform = app.post("alice", "/myspace/connect", json!({})).await;
    assert_eq!(unknown_platform.status(), 404);
    // Bob may not use Alice's connection.
    let stolen = app
        .post(
            "bob",
            "/publish",
            json!({"connection_ids": [connection], "content": {"text": "hi"}}),
        )
        .await;
    assert_eq!(stolen.status(), 404);

    let listed: Value = app.get("alice", "/jobs").await.json().await.unwrap();
    assert_eq!(
        listed["jobs"].as_array().unwrap().len(),
        0,
        "no job was stored"
    );
    let jobs_in_store: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE aggregate_type = 'PublishingJob'")
            .fetch_one(&app.herald().db.any)
            .await
            .unwrap();
    assert_eq!(jobs_in_store, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_changes_nothing_embedded() {
    let app = spawn_app(Backend::Embedded).await;
    bad_input_is_refused_with_a_problem_and_stores_nothing(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_job_and_connection_are_not_found() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_x("alice", "alice_x").await;
    let job_id = app
        .publish("alice", &connection, json!({"text": "mine"}))
        .await;
    app.wait_for_status("alice", &job_id, "published", SOON)
        .await;
    for path in [format!("/jobs/{job_id}"), format!("/jobs/{job_id}/history")] {
        assert_eq!(app.get("bob", &path).await.status(), 404, "{path}");
    }
    assert_eq!(
        app.delete("bob", &format!("/jobs/{job_id}")).await.status(),
        404
    );
    assert_eq!(
        app.post("bob", &format!("/jobs/{job_id}/retry"), json!({}))
            .await
            .status(),
        404
    );
    let bobs: Value = app.get("bob", "/connections").await.json().await.unwrap();
    assert_eq!(bobs["connections"].as_array().unwrap().len(), 0);
    let disconnect = app
        .delete("bob", &format!("/x/disconnect?connection_id={connection}"))
        .await;
    assert_eq!(disconnect.status(), 404);
    let unauthenticated = app.http.get(app.api("/jobs")).send().await.unwrap();
    assert_eq!(unauthenticated.status(), 401);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_makes_publish_safe_to_retry() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_x("alice", "alice_x").await;
    let body = json!({"connection_ids": [connection], "content": {"text": "only once"}});
    let send = || {
        app.http
            .post(app.api("/publish"))
            .bearer_auth(app.token("alice"))
            .header("Idempotency-Key", "order-42")
            .json(&body)
            .send()
    };
    let first: Value = send().await.unwrap().json().await.unwrap();
    let second: Value = send().await.unwrap().json().await.unwrap();
    let job_id = first["jobs"][0]["job_id"].as_str().unwrap();
    assert_eq!(second["jobs"][0]["job_id"], job_id);
    app.wait_for_status("alice", job_id, "published", SOON)
        .await;
    assert_eq!(
        app.sandbox
            .x_state()
            .posts
            .iter()
            .filter(|p| p.text == "only once")
            .count(),
        1
    );
    let reused = app
        .http
        .post(app.api("/publish"))
        .bearer_auth(app.token("alice"))
        .header("Idempotency-Key", "order-42")
        .json(&json!({"connection_ids": [connection], "content": {"text": "something else"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(reused.status(), 422);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_job_waits_for_its_time_and_can_be_cancelled() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_x("alice", "alice_x").await;
    let at = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let response: Value = app
        .post("alice", "/schedule", json!({"connection_ids": [connection], "content": {"text": "on time"}, "publish_at": at}))
        .await
        .json()
        .await
        .unwrap();
    let job_id = response["jobs"][0]["job_id"].as_str().unwrap().to_string();
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let cancelled: Value = app
        .post("alice", "/schedule", json!({"connection_ids": [connection], "content": {"text": "never"}, "publish_at": later}))
        .await
        .json()
        .await
        .unwrap();
    let cancelled_id = cancelled["jobs"][0]["job_id"].as_str().unwrap().to_string();
    assert_eq!(
        app.delete("alice", &format!("/jobs/{cancelled_id}"))
            .await
            .status(),
        200
    );

    let job = app
        .wait_for_status("alice", &job_id, "published", SOON)
        .await;
    let published_at =
        chrono::DateTime::parse_from_rfc3339(job["published_at"].as_str().unwrap()).unwrap();
    let due = chrono::DateTime::parse_from_rfc3339(&at).unwrap();
    assert!(
        published_at >= due,
        "published {published_at} before its time {due}"
    );
    app.wait_for_status("alice", &cancelled_id, "cancelled", SOON)
        .await;
    assert!(app
        .sandbox
        .x_state()
        .posts
        .iter()
        .all(|p| p.text != "never"));
    app.stop().await;
}

/// A request's id (the caller's `X-Request-Id`, else a new one) is echoed in the response and
/// correlates the events the request caused, so one id follows a post from the API onwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_id_is_echoed_and_carried_into_the_events() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_x("alice", "alice_x").await;
    let response = app
        .http
        .post(app.api("/publish"))
        .bearer_auth(app.token("alice"))
        .header("X-Request-Id", "req-from-the-client-42")
        .json(&json!({"connection_ids": [connection], "content": {"text": "traced"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["x-request-id"], "req-from-the-client-42");
    let body: serde_json::Value = response.json().await.unwrap();
    let job = body["jobs"][0]["job_id"].as_str().unwrap().to_owned();
    let history = app.history_events("alice", &job).await;
    assert_eq!(
        history[0]["metadata"]["correlation_id"], "req-from-the-client-42",
        "{}",
        history[0]
    );

    // No id given, or one that is not visible ASCII: Herald makes one up and says which.
    for header in [None, Some("bad id with spaces")] {
        let mut request = app
            .http
            .get(app.api("/jobs"))
            .bearer_auth(app.token("alice"));
        if let Some(value) = header {
            request = request.header("X-Request-Id", value);
        }
        let response = request.send().await.unwrap();
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    }
    // Errors carry it too.
    let missing = app.get("alice", "/jobs/not-a-job").await;
    assert!(missing.headers().contains_key("x-request-id"));
    app.stop().await;
}

/// Errors the framework raises are problem+json too, with the status HTTP gives them: a wrong
/// method 405 with `Allow`, a body that is not JSON 415, one too large 413, no bearer 401 with
/// `WWW-Authenticate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framework_errors_are_problems_with_their_own_status() {
    let app = spawn_app(Backend::Embedded).await;
    let token = app.token("alice");
    let problem = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "application/problem+json");
        let body: Value = response.json().await.unwrap();
        (
            status,
            body["type"].as_str().unwrap_or_default().to_owned(),
            headers,
        )
    };

    let wrong_method = app
        .http
        .delete(app.api("/publish"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (status, kind, headers) = problem(wrong_method).await;
    assert_eq!((status, kind.as_str()), (405, "method-not-allowed"));
    assert_eq!(headers["allow"], "POST");
    let (status, _, headers) = problem(
        app.http
            .put(app.api("/jobs/x"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, headers["allow"].to_str().unwrap()),
        (405, "GET, DELETE")
    );

    let not_json = app
        .http
        .post(app.api("/publish"))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    let (status, kind, _) = problem(not_json).await;
    assert_eq!((status, kind.as_str()), (415, "unsupported-media-type"));

    let huge = json!({"connection_ids": [], "content": {"text": "a".repeat(300 * 1024)}});
    let too_large = app
        .http
        .post(app.api("/publish"))
        .bearer_auth(&token)
        .json(&huge)
        .send()
        .await
        .unwrap();
    let (status, kind, _) = problem(too_large).await;
    assert_eq!((status, kind.as_str()), (413, "payload-too-large"));

    let anonymous = app.http.get(app.api("/jobs")).send().await.unwrap();
    let (status, kind, headers) = problem(anonymous).await;
    assert_eq!((status, kind.as_str()), (401, "unauthorized"));
    assert!(headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    app.stop().await;
}

/// Readiness checks the database and the event log and reports the relay's lag; when a
/// dependency fails it says which, and nothing of the cause, to an anonymous caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_checks_the_database_and_the_log_and_reports_relay_lag() {
    let embedded = spawn_app(Backend::Embedded).await;
    let ready: Value = embedded
        .http
        .get(format!("{}/readyz", embedded.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["event_log"], "ok", "{ready}");
    assert!(
        ready["relay_lag"].is_null(),
        "the local log has no relay: {ready}"
    );
    embedded.stop().await;

    let app = spawn_app(Backend::PostgresKafka).await;
    let readyz = format!("{}/readyz", app.url);
    let ready: Value = app
        .http
        .get(&readyz)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (ready["database"].as_str(), ready["event_log"].as_str()),
        (Some("ok"), Some("ok"))
    );
    assert!(ready["relay_lag"].as_i64().is_some(), "{ready}");

    support::drop_postgres_database(app.config.database_url.as_deref().unwrap()).await;
    let down = app.http.get(&readyz).send().await.unwrap();
    assert_eq!(down.status(), 503);
    let problem: Value = down.json().await.unwrap();
    assert_eq!(
        problem["detail"], "the database is not reachable",
        "{problem}"
    );
    app.stop().await;
}

/// The value of the series `name` whose labels include all of `labels` in a Prometheus text
/// exposition, summed over the other labels; 0 when there is none.
fn series(exposition: &str, name: &str, labels: &[&str]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `/metrics` after a publish, a token refresh, a platform 429, a rejected post and a forged
/// webhook, on Postgres + Kafka: the series move, every family Herald lists is exported, no
/// label carries a user, a job or any content; and the alert rules in `deploy/` load in promtool
/// and, like the dashboard, name only metrics Herald exports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_publishing_and_carry_no_user_content() {
    let app = spawn_app(Backend::PostgresKafka).await;
    let scrape = || async {
        app.http
            .get(format!("{}/metrics", app.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let before = scrape().await;
    let connection = app.connect_x("alice", "alice_x").await;
    // The first post meets a dead access token: Herald refreshes it once.
    app.fault(Twin::X, "create_tweet", json!({"kind": "expire_token"}), 1)
        .await;
    let published = app
        .publish("alice", &connection, json!({"text": "metric-secret-text"}))
        .await;
    app.wait_for_status("alice", &published, "published", Duration::from_secs(60))
        .await;
    app.fault(
        Twin::X,
        "create_tweet",
        json!({"kind": "rate_limited", "retry_after_secs": 1}),
        1,
    )
    .await;
    app.fault(
        Twin::X,
        "create_tweet",
        json!({"kind": "content_rejected"}),
        1,
    )
    .await;
    let failed = app
        .publish("alice", &connection, json!({"text": "second"}))
        .await;
    app.wait_for_status("alice", &failed, "failed", Duration::from_secs(60))
        .await;
    let forged = app
        .http
        .post(format!("{}/api/v1/webhooks/tiktok", app.url))
        .header("TikTok-Signature", "t=1,s=00")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let after = scrape().await;

    let moved =
        |name: &str, labels: &[&str]| series(&after, name, labels) - series(&before, name, labels);
    assert!(
        moved("herald_publish_attempts_total", &["platform=\"x\""]) >= 3.0,
        "{after}"
    );
    assert!(moved("herald_posts_created_total", &["platform=\"x\""]) >= 1.0);
    assert!(
        moved(
            "herald_publish_attempt_failures_total",
            &["error_class=\"rate_limited\""]
        ) >= 1.0,
        "{after}"
    );
    assert!(
        moved(
            "herald_publish_attempt_failures_total",
            &["error_class=\"permanent\""]
        ) >= 1.0,
        "{after}"
    );
    assert!(
        moved("herald_platform_calls_total", &["outcome=\"rate_limited\""]) >= 1.0,
        "{after}"
    );
    assert!(moved("herald_platform_call_duration_seconds_count", &[]) >= 3.0);
    assert!(
        moved(
            "herald_http_requests_total",
            &["route=\"/api/v1/platforms/publish\"", "status=\"202\""]
        ) >= 2.0,
        "{after}"
    );
    assert!(
        series(&after, "herald_jobs", &["status=\"failed\""]) >= 1.0,
        "{after}"
    );
    assert!(series(&after, "herald_scheduler_delay_seconds_count", &[]) >= 1.0);
    assert!(
        moved("herald_token_refreshes_total", &["outcome=\"ok\""]) >= 1.0,
        "{after}"
    );
    assert!(moved("herald_webhook_deliveries_total", &["outcome=\"refused\""]) >= 1.0);
    for leak in ["alice", "metric-secret-text", &connection, &published] {
        assert!(!after.contains(leak), "{leak} in /metrics");
    }
    app.stop().await;

    let exported: std::collections::BTreeSet<&str> = after
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(|name| {
            ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name)
        })
        .collect();
    let listed: std::collections::BTreeSet<&str> = herald_api::metrics::METRICS
        .iter()
        .map(|(name, _)| *name)
        .collect();
    assert_eq!(
        listed.difference(&exported).collect::<Vec<_>>(),
        Vec::<&&str>::new(),
        "listed but not exported"
    );
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    for file in ["prometheus/alerts.yml", "grafana/herald-dashboard.json"] {
        let text = std::fs::read_to_string(deploy.join(file)).unwrap();
        let named: std::collections::BTreeSet<String> = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|word| word.starts_with("herald_"))
            .map(|word| {
                ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|suffix| word.strip_suffix(suffix))
                    .unwrap_or(word)
                    .to_owned()
            })
            .collect();
        assert!(!named.is_empty(), "{file} names no metric");
        for name in &named {
            assert!(
                listed.contains(name.as_str()),
                "{file} names {name}, which Herald does not export"
            );
        }
    }
    let promtool = std::env::var("HERALD_PROMTOOL").unwrap_or_else(|_| {
        panic!("HERALD_PROMTOOL is not set: run the tests through `bash scripts/test.sh`, which installs promtool")
    });
    let checked = std::process::Command::new(promtool)
        .args(["check", "rules"])
        .arg(deploy.join("prometheus/alerts.yml"))
        .output()
        .expect("run promtool");
    assert!(
        checked.status.success(),
        "promtool refused the rules: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}
