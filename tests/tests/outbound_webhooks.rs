//! Outbound webhooks end to end, on both backends: a user subscribes a URL of their own, and a
//! real receiver on loopback, verifying every request with an independent Standard Webhooks
//! implementation (the `standardwebhooks` crate), gets each event it asked for, in order per
//! job, none lost while it was down, duplicates under the same `webhook-id`.
mod support;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use herald_api::config::{Config, Role};
use herald_sandbox::SandboxConfig;
use serde_json::{json, Value};
use support::{eventually, spawn_app_configured, time, Backend, TestApp, Twin};

/// Generous: deliveries wait for real retries.
const SOON: Duration = Duration::from_secs(90);

/// What the receiver answers on one path.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Ok,
    /// This status, with `Retry-After: secs` if given.
    Status(u16, Option<u64>),
    /// No answer for this long (the test stops the receiver before).
    Hang(Duration),
    /// `307` to this path of the same receiver.
    Redirect(&'static str),
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    body: Value,
    raw_body: String,
    /// What the independent implementation said of its signature.
    verified: Result<(), String>,
}

#[derive(Default)]
struct ReceiverState {
    /// The signing secret of the subscription posting to each path.
    secrets: HashMap<String, String>,
    answers: HashMap<String, Answer>,
    received: HashMap<String, Vec<Received>>,
    /// The `webhook-id` of every request that arrived, whatever it was answered.
    arrived: HashMap<String, Vec<String>>,
}

/// A receiver of the users' own systems, on 127.0.0.1, that can go down and come back on the
/// same address.
struct Receiver {
    addr: SocketAddr,
    state: Arc<Mutex<ReceiverState>>,
    server: Option<actix_web::dev::ServerHandle>,
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<Mutex<ReceiverState>>>,
) -> HttpResponse {
    let path = req.path().to_string();
    let mut headers = http::HeaderMap::new();
    for (name, value) in req.headers() {
        headers.insert(
            http::HeaderName::from_bytes(name.as_str().as_bytes()).unwrap(),
            http::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
        );
    }
    let (secret, answer) = {
        let mut state = state.lock().unwrap();
        let id = headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        state.arrived.entry(path.clone()).or_default().push(id);
        (
            state.secrets.get(&path).cloned(),
            state.answers.get(&path).copied().unwrap_or(Answer::Ok),
        )
    };
    let verified = match secret {
        Some(secret) => standardwebhooks::Webhook::new(&secret)
            .and_then(|webhook| webhook.verify(&body, &headers))
            .map_err(|e| e.to_string()),
        None => Err("no secret for this path".into()),
    };
    let received = Received {
        id: headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        raw_body: String::from_utf8_lossy(&body).into_owned(),
        verified,
    };
    match answer {
        Answer::Ok => {
            state
                .lock()
                .unwrap()
                .received
                .entry(path)
                .or_default()
                .push(received);
            HttpResponse::NoContent().finish()
        }
        Answer::Status(status, retry_after) => {
            let mut response =
                HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
            if let Some(secs) = retry_after {
                response.insert_header(("Retry-After", secs.to_string()));
            }
            response.body("not now")
        }
        Answer::Redirect(to) => HttpResponse::TemporaryRedirect()
            .insert_header(("Location", to))
            .finish(),
        Answer::Hang(for_how_long) => {
            tokio::time::sleep(for_how_long).await;
            HttpResponse::NoContent().finish()
        }
    }
}

impl Receiver {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut receiver = Self {
            addr: listener.local_addr().unwrap(),
            state: Arc::default(),
            server: None,
        };
        receiver.serve(listener);
        receiver
    }

    fn serve(&mut self, listener: TcpListener) {
        let state = web::Data::new(self.state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .default_service(web::to(receive))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        self.server = Some(server.handle());
        tokio::spawn(server);
    }

    /// Goes down: connections are refused until `restart`.
    async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop(false).await;
        }
    }

    /// Comes back on the same address.
    fn restart(&mut self) {
        let listener = TcpListener::bind(self.addr).expect("the receiver's address again");
        self.serve(listener);
    }

    /// `host:port`, as `HERALD_WEBHOOK_ALLOWED_HOSTS` takes it.
    fn host(&self) -> String {
        self.addr.to_string()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn expect_secret(&self, path: &str, secret: &str) {
        let mut state = self.state.lock().unwrap();
        state.secrets.insert(path.to_string(), secret.to_string());
    }

    fn answer(&self, path: &str, answer: Answer) {
        self.state
            .lock()
            .unwrap()
            .answers
            .insert(path.to_string(), answer);
    }

    /// What `path` accepted (answered 2xx to), in arrival order.
    fn received(&self, path: &str) -> Vec<Received> {
        self.state
            .lock()
            .unwrap()
            .received
            .get(path)
            .cloned()
            .unwrap_or_default()
    }

    /// The `webhook-id` of every request to `path`, in arrival order.
    fn arrived(&self, path: &str) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .arrived
            .get(path)
            .cloned()
            .unwrap_or_default()
    }

    /// The accepted deliveries of `path`, first copy of each `webhook-id`, in arrival order.
    fn distinct(&self, path: &str) -> Vec<Received> {
        let mut seen = std::collections::HashSet::new();
        self.received(path)
            .into_iter()
            .filter(|r| seen.insert(r.id.clone()))
            .collect()
    }
}

/// An app that may post to `receiver`, retrying after a second or two.
async fn app_for(
    backend: Backend,
    receiver: &Receiver,
    adjust: impl FnOnce(&mut Config),
) -> TestApp {
    let allowed = receiver.host();
    spawn_app_configured(backend, SandboxConfig::default(), Role::All, |config| {
        config.webhook_allowed_hosts = allowed;
        config.webhook_retry_first_secs = 1;
        config.webhook_retry_max_secs = 2;
        adjust(config);
    })
    .await
}

fn subscriptions_url(app: &TestApp, rest: &str) -> String {
    format!("{}/api/v1/webhooks/subscriptions{rest}", app.url)
}

async fn subscribe_raw(app: &TestApp, user: &str, body: Value) -> reqwest::Response {
    app.http
        .post(subscriptions_url(app, ""))
        .bearer_auth(app.token(user))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Subscribes `user`'s `path` on `receiver` to `event_types`; returns the subscription id and
/// tells the receiver the secret.
async fn subscribe(
    app: &TestApp,
    user: &str,
    receiver: &Receiver,
    path: &str,
    event_types: &[&str],
) -> String {
    let response = subscribe_raw(
        app,
        user,
        json!({"url": receiver.url(path), "event_types": event_types}),
    )
    .await;
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let created: Value = response.json().await.unwrap();
    let id = created["subscription_id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/api/v1/webhooks/subscriptions/{id}"));
    assert_eq!(created["status"], "active");
    let secret = created["secret"].as_str().expect("the secret, shown once");
    assert!(secret.starts_with("whsec_"), "{secret}");
    receiver.expect_secret(path, secret);
    id
}

async fn get_json(app: &TestApp, user: &str, rest: &str) -> (u16, String) {
    let response = app
        .http
        .get(subscriptions_url(app, rest))
        .bearer_auth(app.token(user))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn deliveries(app: &TestApp, user: &str, subscription: &str) -> Vec<Value> {
    let (status, body) = get_json(app, user, &format!("/{subscription}/deliveries")).await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    body["deliveries"].as_array().unwrap().clone()
}

async fn post(app: &TestApp, user: &str, rest: &str) -> reqwest::Response {
    app.http
        .post(subscriptions_url(app, rest))
        .bearer_auth(app.token(user))
        .send()
        .await
        .unwrap()
}

/// Waits until `path` accepted `count` distinct deliveries; returns them in arrival order.
async fn wait_for_distinct(receiver: &Receiver, path: &str, count: usize) -> Vec<Received> {
    eventually(
        &format!("{count} distinct deliveries at {path}"),
        SOON,
        || async {
            let distinct = receiver.distinct(path);
            (distinct.len() >= count).then_some(distinct)
        },
    )
    .await
}

fn assert_verified(received: &[Received]) {
    for delivery in received {
        assert_eq!(
            delivery.verified,
            Ok(()),
            "the Standard Webhooks library refused {}: {}",
            delivery.id,
            delivery.raw_body
        );
    }
}

/// The types a job's deliveries arrived with, in order.
fn types_of_job(received: &[Received], job_id: &str) -> Vec<String> {
    received
        .iter()
        .filter(|r| r.body["data"]["job_id"] == job_id)
        .map(|r| r.body["type"].as_str().unwrap().to_string())
        .collect()
}

async fn published_and_failed_jobs_reach_a_verifying_receiver(backend: Backend) {
    let receiver = Receiver::start().await;
    let app = app_for(backend, &receiver, |_| {}).await;
    let alice = subscribe(
        &app,
        "alice",
        &receiver,
        "/alice",
        &["job.published", "job.failed", "connection.disconnected"],
    )
    .await;
    // Bob's subscription hears nothing of alice's jobs.
    subscribe(&app, "bob", &receiver, "/bob", &["job.published"]).await;
    let secret = receiver.state.lock().unwrap().secrets["/alice"].clone();

    let connection = app.connect_x("alice", "alice_x").await;
    let published = app
        .publish("alice", &connection, json!({"text": "webhooks tell"}))
        .await;
    app.wait_for_status("alice", &published, "published", SOON)
        .await;
    app.fault(
        Twin::X,
        "create_tweet",
        json!({"kind": "content_rejected", "detail": "not allowed here"}),
        1,
    )
    .await;
    let failed = app
        .publish("alice", &connection, json!({"text": "webhooks fail"}))
        .await;
    app.wait_for_status("alice", &failed, "failed", SOON).await;
    let response = app.delete("alice", "/x/disconnect").await;
    assert!(
        response.status().is_success(),
        "{:?}",
        response.text().await
    );

    let received = wait_for_distinct(&receiver, "/alice", 3).await;
    assert_verified(&received);
    assert_eq!(types_of_job(&received, &published), ["job.published"]);
    assert_eq!(types_of_job(&received, &failed), ["job.failed"]);
    let of = |job: &str| {
        received
            .iter()
            .find(|r| r.body["data"]["job_id"] == job)
            .unwrap()
            .body
            .clone()
    };
    let post = of(&published);
    assert_eq!(post["data"]["platform"], "x", "{post}");
    assert_eq!(post["data"]["connection_id"], connection.as_str(), "{post}");
    assert_eq!(post["data"]["status"], "published", "{post}");
    assert!(
        post["data"]["post_url"]
            .as_str()
            .unwrap()
            .starts_with("http"),
        "{post}"
    );
    time(post["timestamp"].as_str().unwrap());
    let failure = of(&failed);
    assert_eq!(failure["data"]["error"]["class"], "permanent", "{failure}");
    assert!(failure["data"]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not allowed here"));
    let disconnected = received
        .iter()
        .find(|r| r.body["type"] == "connection.disconnected")
        .expect("the disconnect");
    assert_eq!(
        disconnected.body["data"]["connection_id"],
        connection.as_str()
    );
    for delivery in &received {
        assert!(!delivery.raw_body.contains(&secret));
    }
    assert!(
        receiver.received("/bob").is_empty(),
        "bob heard of alice's jobs"
    );

    // The owner sees each delivery and its attempt.
    let listed = eventually("three deliveries recorded as delivered", SOON, || async {
        let listed = deliveries(&app, "alice", &alice).await;
        (listed.len() == 3 && listed.iter().all(|d| d["status"] == "delivered")).then_some(listed)
    })
    .await;
    for delivery in &listed {
        let attempts = delivery["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "{delivery}");
        assert_eq!(attempts[0]["status_code"], 204, "{delivery}");
        assert!(attempts[0]["latency_ms"].as_i64().unwrap() >= 0);
        assert!(received.iter().any(|r| r.id == delivery["delivery_id"]));
    }

    // Attempts are counted by outcome (the counter is the process's, shared by the tests).
    let metrics = app
        .http
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let delivered: f64 = metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix("herald_outbound_webhooks_total{outcome=\"delivered\"} ")
        })
        .unwrap_or_else(|| panic!("no delivered count in /metrics: {metrics}"))
        .parse()
        .unwrap();
    assert!(delivered >= 3.0, "{delivered}");
    assert!(!metrics.contains(&secret) && !metrics.contains(&alice));

    // The secret was shown once: no later answer has it.
    for rest in [
        String::new(),
        format!("/{alice}"),
        format!("/{alice}/deliveries"),
    ] {
        let (status, body) = get_json(&app, "alice", &rest).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            !body.contains(&secret),
            "the secret is in GET {rest}: {body}"
        );
    }
    // Delivered deliveries are forgotten after the retention time; nothing else is.
    let webhooks = &app.herald().webhooks;
    let an_hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    assert_eq!(webhooks.prune(an_hour_ago).await.unwrap(), 0);
    assert_eq!(deliveries(&app, "alice", &alice).await.len(), 3);
    let in_a_minute = chrono::Utc::now() + chrono::Duration::minutes(1);
    assert_eq!(webhooks.prune(in_a_minute).await.unwrap(), 3);
    assert!(deliveries(&app, "alice", &alice).await.is_empty());

    // Nor is it stored in clear anywhere (Postgres: every row of every table).
    if let Some(url) = &app.config.database_url {
        for (table, row) in support::db::dump_postgres(url).await {
            assert!(
                !row.contains(&secret) && !row.contains(&support::db::hex(secret.as_bytes())),
                "the secret is in table {table}: {row}"
            );
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_and_failed_jobs_reach_a_verifying_receiver_embedded() {
    published_and_failed_jobs_reach_a_verifying_receiver(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_and_failed_jobs_reach_a_verifying_receiver_postgres_kafka() {
    published_and_failed_jobs_reach_a_verifying_receiver(Backend::PostgresKafka).await;
}

async fn a_receiver_down_then_back_gets_every_event_in_order(backend: Backend) {
    let mut receiver = Receiver::start().await;
    let app = app_for(backend, &receiver, |_| {}).await;
    let subscription = subscribe(
        &app,
        "alice",
        &receiver,
        "/hooks",
        &["job.published", "job.retry_scheduled"],
    )
    .await;
    receiver.stop().await;

    let connection = app.connect_x("alice", "alice_x").await;
    // The first job's post fails twice on X before it lands: two retries, then published.
    app.fault(
        Twin::X,
        "create_tweet",
        json!({"kind": "server_error", "status": 503}),
        2,
    )
    .await;
    let retried = app
        .publish("alice", &connection, json!({"text": "down, then up: 1"}))
        .await;
    app.wait_for_status("alice", &retried, "published", SOON)
        .await;
    let mut others = Vec::new();
    for n in 2..=3 {
        let job = app
            .publish(
                "alice",
                &connection,
                json!({"text": format!("down, then up: {n}")}),
            )
            .await;
        app.wait_for_status("alice", &job, "published", SOON).await;
        others.push(job);
    }
    // Every delivery is recorded and has been tried, in vain, more than once.
    eventually(
        "deliveries retried while the receiver is down",
        SOON,
        || async {
            let listed = deliveries(&app, "alice", &subscription).await;
            (listed.len() == 5
                && listed.iter().any(|d| {
                    d["attempts"].as_array().unwrap().len() >= 2
                        && d["last_error"]
                            .as_str()
                            .is_some_and(|e| e.contains("could not connect"))
                }))
            .then_some(())
        },
    )
    .await;
    assert!(receiver.received("/hooks").is_empty());

    receiver.restart();
    let received = wait_for_distinct(&receiver, "/hooks", 5).await;
    assert_verified(&receiver.received("/hooks"));
    assert_eq!(
        types_of_job(&received, &retried),
        [
            "job.retry_scheduled",
            "job.retry_scheduled",
            "job.published"
        ],
        "in order per job"
    );
    for job in &others {
        assert_eq!(types_of_job(&received, job), ["job.published"]);
    }
    eventually("every delivery recorded as delivered", SOON, || async {
        let listed = deliveries(&app, "alice", &subscription).await;
        listed
            .iter()
            .all(|d| d["status"] == "delivered")
            .then_some(())
    })
    .await;

    // A redelivery is a duplicate under the same webhook-id, with the same body.
    let first = received[0].clone();
    let response = post(
        &app,
        "alice",
        &format!("/{subscription}/deliveries/{}/redeliver", first.id),
    )
    .await;
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
    let copies = eventually("the redelivered copy", SOON, || async {
        let copies: Vec<_> = receiver
            .received("/hooks")
            .into_iter()
            .filter(|r| r.id == first.id)
            .collect();
        (copies.len() >= 2).then_some(copies)
    })
    .await;
    assert_verified(&copies);
    assert!(copies.iter().all(|c| c.raw_body == first.raw_body));
    eventually("the redelivery recorded", SOON, || async {
        let listed = deliveries(&app, "alice", &subscription).await;
        listed
            .iter()
            .all(|d| d["status"] == "delivered")
            .then_some(())
    })
    .await;

    // A replay sends again everything since a time, under the same ids.
    let before = receiver.received("/hooks").len();
    let since = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let response = app
        .http
        .post(subscriptions_url(&app, &format!("/{subscription}/replay")))
        .query(&[("since", since.as_str())])
        .bearer_auth(app.token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let replayed: Value = response.json().await.unwrap();
    assert_eq!(replayed["replayed"], 5, "{replayed}");
    let all = eventually("the replayed copies", SOON, || async {
        let all = receiver.received("/hooks");
        (all.len() >= before + 5).then_some(all)
    })
    .await;
    assert_verified(&all);
    let ids: std::collections::BTreeSet<_> = all.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids.len(), 5, "copies carry the ids of the originals");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_then_back_gets_every_event_in_order_embedded() {
    a_receiver_down_then_back_gets_every_event_in_order(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_then_back_gets_every_event_in_order_postgres_kafka() {
    a_receiver_down_then_back_gets_every_event_in_order(Backend::PostgresKafka).await;
}

async fn expect_problem(response: reqwest::Response, status: u16, kind: &str) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], kind, "{problem}");
    problem
}

async fn bad_subscriptions_are_refused_and_change_nothing(backend: Backend) {
    let receiver = Receiver::start().await;
    let app = app_for(backend, &receiver, |config| {
        config.max_webhook_subscriptions_per_user = 2;
    })
    .await;
    for (url, kind) in [
        ("http://localhost:8080/hooks", "loopback"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://10.1.2.3/hooks", "private"),
        ("http://[::ffff:127.0.0.1]/hooks", "loopback"),
    ] {
        let response = subscribe_raw(
            &app,
            "alice",
            json!({"url": url, "event_types": ["job.published"]}),
        )
        .await;
        let problem = expect_problem(response, 422, "webhook-url-refused").await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains(kind) && detail.contains("public addresses"),
            "{url}: {detail}"
        );
    }
    for body in [
        json!({"url": "ftp://example.com/hooks", "event_types": ["job.published"]}),
        json!({"url": "not a url", "event_types": ["job.published"]}),
        json!({"url": "https://user:pass@example.com/hooks", "event_types": ["job.published"]}),
        json!({"url": receiver.url("/x"), "event_types": []}),
        json!({"url": receiver.url("/x"), "event_types": ["job.exploded"]}),
        json!({"url": receiver.url("/x"), "event_types": ["job.published"], "extra": 1}),
        json!({"event_types": ["job.published"]}),
    ] {
        expect_problem(
            subscribe_raw(&app, "alice", body.clone()).await,
            400,
            "validation-error",
        )
        .await;
    }
    let (status, body) = get_json(&app, "alice", "").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["subscriptions"],
        json!([]),
        "nothing was stored"
    );

    // At most two per user here.
    let first = subscribe(&app, "alice", &receiver, "/a", &["job.published"]).await;
    subscribe(&app, "alice", &receiver, "/b", &["job.failed"]).await;
    let response = subscribe_raw(
        &app,
        "alice",
        json!({"url": receiver.url("/c"), "event_types": ["job.published"]}),
    )
    .await;
    let problem = expect_problem(response, 409, "limit-reached").await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("HERALD_MAX_WEBHOOK_SUBSCRIPTIONS_PER_USER"));

    // Another user's subscription does not exist for bob.
    let (status, _) = get_json(&app, "bob", &format!("/{first}")).await;
    assert_eq!(status, 404);
    let (status, _) = get_json(&app, "bob", &format!("/{first}/deliveries")).await;
    assert_eq!(status, 404);
    let response = app
        .http
        .delete(subscriptions_url(&app, &format!("/{first}")))
        .bearer_auth(app.token("bob"))
        .send()
        .await
        .unwrap();
    expect_problem(response, 404, "not-found").await;
    let response = post(&app, "bob", &format!("/{first}/deliveries/msg_x/redeliver")).await;
    expect_problem(response, 404, "not-found").await;
    let response = post(&app, "alice", &format!("/{first}/replay?since=yesterday")).await;
    expect_problem(response, 400, "validation-error").await;
    let response = app
        .http
        .put(subscriptions_url(&app, ""))
        .bearer_auth(app.token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "GET, POST");
    expect_problem(response, 405, "method-not-allowed").await;

    // Alice deletes hers; it is gone.
    let response = app
        .http
        .delete(subscriptions_url(&app, &format!("/{first}")))
        .bearer_auth(app.token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let (status, _) = get_json(&app, "alice", &format!("/{first}")).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_subscriptions_are_refused_and_change_nothing_embedded() {
    bad_subscriptions_are_refused_and_change_nothing(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_subscriptions_are_refused_and_change_nothing_postgres_kafka() {
    bad_subscriptions_are_refused_and_change_nothing(Backend::PostgresKafka).await;
}

/// A receiver that keeps refusing, asking for time with `Retry-After`: Herald waits as asked,
/// gives up at the end of the (here: short) retry window and disables the subscription with the
/// reason; enabled again, it sends what waited, and the given-up delivery can be sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_is_waited_for_then_its_subscription_disabled_and_enabled_again() {
    let receiver = Receiver::start().await;
    let app = app_for(Backend::Embedded, &receiver, |config| {
        config.webhook_retry_window_secs = 5;
    })
    .await;
    let subscription = subscribe(&app, "alice", &receiver, "/busy", &["job.published"]).await;
    receiver.answer("/busy", Answer::Status(503, Some(3)));
    let connection = app.connect_x("alice", "alice_x").await;
    let first = app
        .publish("alice", &connection, json!({"text": "refused for a while"}))
        .await;
    app.wait_for_status("alice", &first, "published", SOON)
        .await;

    let disabled = eventually("the subscription disabled", SOON, || async {
        let (_, body) = get_json(&app, "alice", &format!("/{subscription}")).await;
        let body: Value = serde_json::from_str(&body).unwrap();
        (body["status"] == "disabled").then_some(body)
    })
    .await;
    let reason = disabled["disabled_reason"].as_str().unwrap();
    assert!(reason.contains("HTTP 503"), "{reason}");
    let listed = deliveries(&app, "alice", &subscription).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["status"], "failed");
    let attempts = listed[0]["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 2, "{attempts:?}");
    assert_eq!(attempts[0]["status_code"], 503);
    let tried = time(attempts[0]["attempted_at"].as_str().unwrap());
    let next = time(attempts[0]["next_retry_at"].as_str().unwrap());
    assert!(
        next >= tried + chrono::Duration::seconds(3),
        "Retry-After: 3 honoured: tried {tried}, next {next}"
    );
    let second_try = time(attempts[1]["attempted_at"].as_str().unwrap());
    assert!(second_try >= next, "retried at {second_try}, before {next}");

    // While disabled, events wait; enabled, they go out, and the given-up one can be redelivered.
    receiver.answer("/busy", Answer::Ok);
    let second = app
        .publish("alice", &connection, json!({"text": "while disabled"}))
        .await;
    app.wait_for_status("alice", &second, "published", SOON)
        .await;
    eventually("the second delivery recorded", SOON, || async {
        (deliveries(&app, "alice", &subscription).await.len() == 2).then_some(())
    })
    .await;
    assert!(
        receiver.received("/busy").is_empty(),
        "nothing sent while disabled"
    );
    let response = post(&app, "alice", &format!("/{subscription}/enable")).await;
    assert_eq!(response.status(), 200);
    let received = wait_for_distinct(&receiver, "/busy", 1).await;
    assert_eq!(types_of_job(&received, &second), ["job.published"]);
    let given_up = listed[0]["delivery_id"].as_str().unwrap();
    let response = post(
        &app,
        "alice",
        &format!("/{subscription}/deliveries/{given_up}/redeliver"),
    )
    .await;
    assert_eq!(response.status(), 202);
    let received = wait_for_distinct(&receiver, "/busy", 2).await;
    assert_verified(&received);
    assert_eq!(types_of_job(&received, &first), ["job.published"]);
    app.stop().await;
}

/// A receiver that never answers holds back only its own subscription: another user's
/// subscription gets every event while the first one's attempts are still waiting for an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_delays_only_its_own_subscription() {
    let mut receiver = Receiver::start().await;
    let app = app_for(Backend::Embedded, &receiver, |config| {
        config.webhook_timeout_secs = 120;
    })
    .await;
    let stuck = subscribe(&app, "alice", &receiver, "/stuck", &["job.published"]).await;
    subscribe(&app, "alice", &receiver, "/healthy", &["job.published"]).await;
    receiver.answer("/stuck", Answer::Hang(Duration::from_secs(600)));
    let connection = app.connect_x("alice", "alice_x").await;
    let mut jobs = Vec::new();
    for n in 1..=6 {
        jobs.push(
            app.publish(
                "alice",
                &connection,
                json!({"text": format!("isolated {n}")}),
            )
            .await,
        );
    }
    let received = wait_for_distinct(&receiver, "/healthy", jobs.len()).await;
    assert_verified(&received);
    let listed = deliveries(&app, "alice", &stuck).await;
    assert_eq!(listed.len(), jobs.len());
    assert!(
        listed.iter().all(|d| d["attempts"] == json!([])),
        "the stuck subscription's attempts have not ended: {listed:?}"
    );
    // Dropping the hanging connections ends those attempts, so the app stops promptly.
    receiver.stop().await;
    app.stop().await;
}

/// A redirect is not followed: the signed body goes only where its owner said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirecting_receiver_is_not_followed() {
    let receiver = Receiver::start().await;
    let app = app_for(Backend::Embedded, &receiver, |_| {}).await;
    let subscription = subscribe(&app, "alice", &receiver, "/moved", &["job.published"]).await;
    receiver.answer("/moved", Answer::Redirect("/elsewhere"));
    let connection = app.connect_x("alice", "alice_x").await;
    let job = app
        .publish("alice", &connection, json!({"text": "no detours"}))
        .await;
    app.wait_for_status("alice", &job, "published", SOON).await;
    let delivery = eventually("an attempt answered by the redirect", SOON, || async {
        deliveries(&app, "alice", &subscription)
            .await
            .into_iter()
            .find(|d| !d["attempts"].as_array().unwrap().is_empty())
    })
    .await;
    let attempt = &delivery["attempts"][0];
    assert_eq!(attempt["status_code"], 307, "{delivery}");
    assert!(
        attempt["error"]
            .as_str()
            .unwrap()
            .contains("redirects are not followed"),
        "{delivery}"
    );
    assert_eq!(delivery["status"], "pending", "retried later: {delivery}");
    assert!(receiver.received("/elsewhere").is_empty());
    // A delivery still waiting is kept, however old.
    let in_a_day = chrono::Utc::now() + chrono::Duration::days(1);
    assert_eq!(app.herald().webhooks.prune(in_a_day).await.unwrap(), 0);
    assert_eq!(deliveries(&app, "alice", &subscription).await.len(), 1);
    app.stop().await;
}

/// At least once across a crash: a worker process killed with `kill -9` while its request is
/// in flight loses its claim when the lease runs out, and another worker sends the same
/// delivery, under the same `webhook-id`.
async fn a_delivery_in_flight_when_its_worker_is_killed_is_sent_by_another(backend: Backend) {
    let receiver = Receiver::start().await;
    let allowed = receiver.host();
    let mut split =
        support::worker::SplitApp::start_configured(backend, SandboxConfig::default(), |config| {
            config.webhook_allowed_hosts = allowed;
            config.webhook_retry_first_secs = 1;
            config.webhook_retry_max_secs = 2;
            config.webhook_timeout_secs = 10;
        })
        .await;
    let app = &split.app;
    let subscription = subscribe(app, "alice", &receiver, "/crash", &["job.published"]).await;
    receiver.answer("/crash", Answer::Hang(Duration::from_secs(600)));
    let first = split.worker_config();
    let worker = split.spawn_worker(&first, "info");
    let app = &split.app;
    let connection = app.connect_x("alice", "alice_x").await;
    let job = app
        .publish("alice", &connection, json!({"text": "sent at least once"}))
        .await;
    app.wait_for_status("alice", &job, "published", SOON).await;
    let in_flight = eventually("the first worker's request arrived", SOON, || async {
        receiver.arrived("/crash").first().cloned()
    })
    .await;
    worker.kill();
    assert_eq!(
        deliveries(app, "alice", &subscription).await[0]["attempts"],
        json!([]),
        "the killed worker recorded no attempt"
    );
    receiver.answer("/crash", Answer::Ok);
    let second = split.worker_config();
    let _survivor = split.spawn_worker(&second, "info");
    let received = wait_for_distinct(&receiver, "/crash", 1).await;
    assert_verified(&received);
    assert_eq!(
        received[0].id, in_flight,
        "the same delivery, under the same id"
    );
    assert_eq!(types_of_job(&received, &job), ["job.published"]);
    split.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_in_flight_when_its_worker_is_killed_is_sent_by_another_embedded() {
    a_delivery_in_flight_when_its_worker_is_killed_is_sent_by_another(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_in_flight_when_its_worker_is_killed_is_sent_by_another_postgres_kafka() {
    a_delivery_in_flight_when_its_worker_is_killed_is_sent_by_another(Backend::PostgresKafka).await;
}

/// A refused grant tells both: the job failed, and the connection needs its user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_is_told_as_a_failed_job_and_a_connection_needing_its_user() {
    let receiver = Receiver::start().await;
    let app = app_for(Backend::Embedded, &receiver, |_| {}).await;
    subscribe(
        &app,
        "alice",
        &receiver,
        "/grants",
        &[
            "job.failed",
            "connection.reauthorization_required",
            "connection.expired",
        ],
    )
    .await;
    let connection = app.connect_x("alice", "alice_x").await;
    app.fault(Twin::X, "create_tweet", json!({"kind": "expire_token"}), 1)
        .await;
    app.fault(Twin::X, "token", json!({"kind": "revoke_grant"}), 1)
        .await;
    let job = app
        .publish("alice", &connection, json!({"text": "never posted"}))
        .await;
    app.wait_for_status("alice", &job, "failed", SOON).await;
    let received = wait_for_distinct(&receiver, "/grants", 2).await;
    assert_verified(&received);
    assert_eq!(types_of_job(&received, &job), ["job.failed"]);
    let needs_user = received
        .iter()
        .find(|r| r.body["type"] == "connection.reauthorization_required")
        .unwrap_or_else(|| panic!("no connection event in {received:?}"));
    let data = &needs_user.body["data"];
    assert_eq!(data["connection_id"], connection.as_str(), "{data}");
    assert_eq!(data["platform"], "x");
    assert_eq!(data["status"], "expired");
    assert_eq!(data["account_username"], "alice_x", "{data}");
    assert!(
        data["reason"]
            .as_str()
            .unwrap()
            .contains("Connect the account again"),
        "{data}"
    );
    app.stop().await;
}
