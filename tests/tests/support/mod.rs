//! Test harness: each test gets its own Herald (API and workers) on port 0, its own sandbox
//! platforms on port 0, and its own database — a fresh Postgres database plus its own Kafka
//! topics, or a temporary SQLite directory for the embedded default.
#![allow(dead_code)]

pub mod db;
pub mod kafka;
pub mod worker;

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use herald_api::config::{Config, Role};
use herald_api::runtime::Herald;
use herald_api::sandbox::twin as sandbox_twin;
use herald_api::server::Running;
use herald_infrastructure::platforms::registry::PLATFORMS;
use herald_sandbox::{Sandbox, SandboxConfig};
use serde_json::{json, Value};

/// Which store and log the app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite and the local event log: the no-configuration default.
    Embedded,
    /// Postgres and the Kafka-protocol broker: production.
    PostgresKafka,
}

pub const JWT_SECRET: &str = "herald-test-secret-herald-test-secret";

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through `bash scripts/test.sh` (or `eval \"$(bash scripts/test-services.sh)\"` first)")
    })
}

/// A fresh Postgres database; returns its URL.
pub async fn fresh_postgres_database() -> String {
    let admin = required_env("HERALD_TEST_DATABASE_URL");
    herald_infrastructure::db::create_scratch_database(&admin, "herald_test")
        .await
        .expect("create a test database")
        .0
}

/// Drops a database made by `fresh_postgres_database` (tests that panic leave theirs behind).
pub async fn drop_postgres_database(url: &str) {
    let Ok(parsed) = url::Url::parse(url) else {
        return;
    };
    let name = parsed.path().trim_start_matches('/').to_string();
    if !name.starts_with("herald_test_") {
        return;
    }
    let admin = required_env("HERALD_TEST_DATABASE_URL");
    if let Ok(pool) = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin)
        .await
    {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&pool)
            .await;
        pool.close().await;
    }
}

/// The configuration of a test app talking to `sandbox`.
pub async fn test_config(backend: Backend, sandbox: &Sandbox, data_dir: PathBuf) -> Config {
    let mut config = Config::embedded(data_dir);
    config.sandbox = Some(false);
    // Every platform at its twin, as an operator would configure a real one.
    for platform in PLATFORMS {
        let twin = sandbox_twin(sandbox, platform.twin).expect("the sandbox runs every twin");
        config
            .platforms
            .use_twin(platform.env_prefix, &twin)
            .set(format!("{}REQUEST_TIMEOUT_SECS", platform.env_prefix), "2");
    }
    config
        .platforms
        // Small chunks, so test videos of a few MB upload in several.
        .set("TIKTOK_CHUNK_BYTES", (5 * 1024 * 1024).to_string())
        // The twin keeps the last twelve months active, as LinkedIn does.
        .set(
            "LINKEDIN_VERSION",
            chrono::Utc::now().format("%Y%m").to_string(),
        );
    config.jwt_secret = Some(JWT_SECRET.into());
    // Tests poll freely; the limits have tests of their own.
    config.api_queries_per_minute = 0;
    config.api_commands_per_minute = 0;
    config.job_lease_secs = 3;
    config.worker_id = Some(format!("test-{}", uuid::Uuid::new_v4().simple()));
    // The sandbox serves the sample media on loopback: allowed by name, nothing else is.
    config.media_allowed_hosts = sandbox.local_addr().to_string();
    if backend == Backend::PostgresKafka {
        // Production mode: the vault key is given, as every process must share it.
        config.vault_key = Some(worker::generate_vault_key());
        config.database_url = Some(fresh_postgres_database().await);
        config.kafka_brokers = Some(required_env("HERALD_TEST_KAFKA_BROKERS"));
        config.kafka_topic_prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
        config.kafka_partitions = 2;
    }
    config
}

/// A running Herald plus its sandbox and typed helpers to call the API.
pub struct TestApp {
    pub url: String,
    pub sandbox: Sandbox,
    pub running: Option<Running>,
    pub config: Config,
    pub http: reqwest::Client,
    pub data_dir: PathBuf,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, SandboxConfig::default(), Role::All).await
}

pub async fn spawn_app_with(
    backend: Backend,
    sandbox_config: SandboxConfig,
    role: Role,
) -> TestApp {
    spawn_app_configured(backend, sandbox_config, role, |_| {}).await
}

/// `spawn_app_with`, letting the test adjust the configuration before Herald is built.
pub async fn spawn_app_configured(
    backend: Backend,
    sandbox_config: SandboxConfig,
    role: Role,
    adjust: impl FnOnce(&mut Config),
) -> TestApp {
    let sandbox = Sandbox::start("127.0.0.1:0", sandbox_config)
        .await
        .expect("start the sandbox");
    let data_dir =
        std::env::temp_dir().join(format!("herald-test-{}", uuid::Uuid::new_v4().simple()));
    let mut config = test_config(backend, &sandbox, data_dir.clone()).await;
    adjust(&mut config);
    let herald = Herald::build(config.clone()).await.expect("build Herald");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let running = herald_api::server::start(herald, listener, role)
        .await
        .expect("start Herald");
    TestApp {
        url: running.url.clone(),
        sandbox,
        running: Some(running),
        config,
        http: reqwest::Client::new(),
        data_dir,
    }
}

impl TestApp {
    pub fn herald(&self) -> &Herald {
        &self.running.as_ref().expect("running").herald
    }

    pub fn token(&self, user: &str) -> String {
        herald_api::auth::mint(JWT_SECRET.as_bytes(), user, Duration::from_secs(3600)).unwrap()
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1/platforms{path}", self.url)
    }

    pub async fn get(&self, user: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.api(path))
            .bearer_auth(self.token(user))
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, user: &str, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.api(path))
            .bearer_auth(self.token(user))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, user: &str, path: &str) -> reqwest::Response {
        self.http
            .delete(self.api(path))
            .bearer_auth(self.token(user))
            .send()
            .await
            .unwrap()
    }

    /// Connects `user` to sandbox X as `sandbox_user`; returns the connection id.
    pub async fn connect_x(&self, user: &str, sandbox_user: &str) -> String {
        self.connect("x", user, sandbox_user).await
    }

    /// Connects `user` to sandbox Threads as `sandbox_user`; returns the connection id.
    pub async fn connect_threads(&self, user: &str, sandbox_user: &str) -> String {
        self.connect("threads", user, sandbox_user).await
    }

    /// Connects `user` to the sandbox YouTube channel of Google account `sandbox_user`.
    pub async fn connect_youtube(&self, user: &str, sandbox_user: &str) -> String {
        self.connect("youtube", user, sandbox_user).await
    }

    /// Connects `user` to sandbox Facebook Pages, logging in as `sandbox_user`; returns one
    /// connection id per Page.
    pub async fn connect_facebook_pages(&self, user: &str, sandbox_user: &str) -> Vec<String> {
        self.connect_accounts("facebook_pages", user, sandbox_user)
            .await
            .expect("the Facebook login connects")
    }

    /// Connects `user` to sandbox Instagram, logging in to Facebook as `sandbox_user`; returns
    /// one connection id per linked business account.
    pub async fn connect_instagram(&self, user: &str, sandbox_user: &str) -> Vec<String> {
        self.connect_accounts("instagram", user, sandbox_user)
            .await
            .expect("the Instagram login connects")
    }

    /// The whole connect flow of a platform whose login may yield several accounts: the
    /// connection ids, or the callback's problem document.
    pub async fn connect_accounts(
        &self,
        platform: &str,
        user: &str,
        sandbox_user: &str,
    ) -> Result<Vec<String>, Value> {
        let started: Value = self
            .post(user, &format!("/{platform}/connect"), json!({}))
            .await
            .json()
            .await
            .unwrap();
        let url = format!(
            "{}&sandbox_user={sandbox_user}",
            started["authorization_url"].as_str().unwrap()
        );
        let response = self.http.get(url).send().await.unwrap();
        let ok = response.status() == 200;
        let authorized: Value = response.json().await.unwrap();
        if !ok {
            return Err(authorized);
        }
        let response = self.complete_connect(user, platform, &authorized).await;
        let ok = response.status() == 200;
        let body: Value = response.json().await.unwrap();
        if !ok {
            return Err(body);
        }
        Ok(body["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["connection_id"].as_str().unwrap().to_string())
            .collect())
    }

    /// Connects `user` to sandbox TikTok as `sandbox_user`; returns the connection id.
    pub async fn connect_tiktok(&self, user: &str, sandbox_user: &str) -> String {
        self.connect("tiktok", user, sandbox_user).await
    }

    /// Connects `user` to sandbox LinkedIn as `sandbox_user`; returns every connection the login
    /// gives, the member first, then the organisations the member posts for.
    pub async fn connect_linkedin(&self, user: &str, sandbox_user: &str) -> Vec<String> {
        let body = self.connect_body("linkedin", user, sandbox_user).await;
        body["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["connection_id"].as_str().unwrap().to_string())
            .collect()
    }

    /// Connects `user` to sandbox Reddit as `sandbox_user`; returns the connection id.
    pub async fn connect_reddit(&self, user: &str, sandbox_user: &str) -> String {
        self.connect("reddit", user, sandbox_user).await
    }

    async fn connect(&self, platform: &str, user: &str, sandbox_user: &str) -> String {
        let body = self.connect_body(platform, user, sandbox_user).await;
        body["connection_id"].as_str().unwrap().to_string()
    }

    /// The OAuth callback's answer after connecting through the sandbox's consent page.
    async fn connect_body(&self, platform: &str, user: &str, sandbox_user: &str) -> Value {
        let started: Value = self
            .post(user, &format!("/{platform}/connect"), json!({}))
            .await
            .json()
            .await
            .unwrap();
        let url = format!(
            "{}&sandbox_user={sandbox_user}",
            started["authorization_url"].as_str().unwrap()
        );
        // The sandbox approves at once and redirects to Herald's callback.
        let response = self.http.get(url).send().await.unwrap();
        assert_eq!(
            response.status(),
            200,
            "callback failed: {:?}",
            response.text().await
        );
        let authorized: Value = response.json().await.unwrap();
        let response = self.complete_connect(user, platform, &authorized).await;
        assert_eq!(
            response.status(),
            200,
            "completion failed: {:?}",
            response.text().await
        );
        response.json().await.unwrap()
    }

    /// `user` claims the login the callback answered with (`authorized`, holding its
    /// `connect_code`): the step a client application takes for its signed-in user.
    pub async fn complete_connect(
        &self,
        user: &str,
        platform: &str,
        authorized: &Value,
    ) -> reqwest::Response {
        let code = authorized["connect_code"]
            .as_str()
            .unwrap_or_else(|| panic!("the callback gave no connect_code: {authorized}"));
        self.post(
            user,
            &format!("/{platform}/connect/complete"),
            json!({ "connect_code": code }),
        )
        .await
    }

    /// Publishes `content` to `connection`; returns the job id.
    pub async fn publish(&self, user: &str, connection: &str, content: Value) -> String {
        let response = self
            .post(
                user,
                "/publish",
                json!({"connection_ids": [connection], "content": content}),
            )
            .await;
        assert_eq!(response.status(), 202, "{:?}", response.text().await);
        let body: Value = response.json().await.unwrap();
        body["jobs"][0]["job_id"].as_str().unwrap().to_string()
    }

    /// Polls the query API until the job has `status`; returns the job.
    pub async fn wait_for_status(
        &self,
        user: &str,
        job_id: &str,
        status: &str,
        within: Duration,
    ) -> Value {
        let deadline = Instant::now() + within;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            let response = self.get(user, &format!("/jobs/{job_id}")).await;
            if response.status() == 200 {
                last = response.json().await.unwrap();
                if last["status"] == status {
                    return last;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("job {job_id} did not reach {status} within {within:?}; last seen: {last}");
    }

    pub async fn history(&self, user: &str, job_id: &str) -> Vec<String> {
        self.history_events(user, job_id)
            .await
            .iter()
            .map(|e| e["event_type"].as_str().unwrap().to_string())
            .collect()
    }

    /// The job's history (event types), after checking that an unknown outcome was reconciled
    /// against the platform: `OutcomeUnknown`, then `Reconciled`.
    pub async fn history_reconciled(&self, user: &str, job_id: &str) -> Vec<String> {
        let history = self.history(user, job_id).await;
        let unknown = history.iter().position(|t| t == "OutcomeUnknown");
        let reconciled = history.iter().position(|t| t == "Reconciled");
        assert!(
            matches!((unknown, reconciled), (Some(u), Some(r)) if u < r),
            "OutcomeUnknown, then Reconciled: {history:?}"
        );
        history
    }

    /// The twins' checksum ([`herald_sandbox::tiktok::checksum`]) of the file at a media
    /// item's URL, to compare with what a twin received.
    pub async fn media_checksum(&self, media: &Value) -> String {
        let bytes = self
            .http
            .get(media["url"].as_str().expect("a media URL"))
            .send()
            .await
            .expect("the sandbox serves the media")
            .bytes()
            .await
            .expect("the media body");
        herald_sandbox::tiktok::checksum(&bytes)
    }

    /// The job's full history: `{sequence, event_type, occurred_at, data: {Type: {...}}, ...}`.
    pub async fn history_events(&self, user: &str, job_id: &str) -> Vec<Value> {
        let body: Value = self
            .get(user, &format!("/jobs/{job_id}/history"))
            .await
            .json()
            .await
            .unwrap();
        body["events"]
            .as_array()
            .unwrap_or_else(|| panic!("no events in the history of {job_id}: {body}"))
            .clone()
    }

    /// `GET /connections` for `user`: the list of connection views.
    pub async fn connections(&self, user: &str) -> Vec<Value> {
        let body: Value = self.get(user, "/connections").await.json().await.unwrap();
        body["connections"].as_array().unwrap().clone()
    }

    /// Requests the sandbox X twin received with `method` on a path ending with `path_suffix`
    /// (e.g. `("POST", "/2/tweets")`, `("POST", "/2/oauth2/token")`), oldest first.
    pub fn x_requests(
        &self,
        method: &str,
        path_suffix: &str,
    ) -> Vec<herald_sandbox::RequestRecord> {
        self.sandbox
            .x_state()
            .requests
            .into_iter()
            .filter(|r| r.method == method && r.path.ends_with(path_suffix))
            .collect()
    }

    /// How many posts with exactly `text` the sandbox X holds.
    pub fn posts_with_text(&self, text: &str) -> usize {
        self.sandbox
            .x_state()
            .posts
            .iter()
            .filter(|p| p.text == text)
            .count()
    }

    /// Clears every pending sandbox X fault.
    pub async fn clear_x_faults(&self) {
        let response = self
            .http
            .delete(format!("{}/_sandbox/faults", self.sandbox.x_base_url()))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }

    /// POSTs `body` to a twin's control route `/_sandbox/{control}`: `faults`, or TikTok's
    /// `errors`, `fail_reasons` and `creators`. Panics unless the twin accepts it.
    pub async fn sandbox_control(&self, twin: Twin, control: &str, body: Value) {
        let response = self
            .http
            .post(format!(
                "{}/_sandbox/{control}",
                twin.base_url(&self.sandbox)
            ))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{twin:?} refused the {control} control: {:?}",
            response.text().await
        );
    }

    /// The twin's read-only state document, over HTTP (`GET /_sandbox/state`).
    pub async fn twin_state(&self, twin: Twin) -> Value {
        let response = self
            .http
            .get(format!("{}/_sandbox/state", twin.base_url(&self.sandbox)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{twin:?} state");
        response.json().await.unwrap()
    }

    /// Queues `fault` (`{"kind": ...}`) for the next `times` calls to the twin's `endpoint`.
    pub async fn fault(&self, twin: Twin, endpoint: &str, fault: Value, times: u32) {
        let body = json!({"endpoint": endpoint, "fault": fault, "times": times});
        self.sandbox_control(twin, "faults", body).await;
    }

    /// [`Self::fault`] on the Meta twin.
    pub async fn meta_fault(&self, endpoint: &str, fault: Value, times: u32) {
        self.fault(Twin::Meta, endpoint, fault, times).await;
    }

    /// [`Self::fault`] on the Threads twin.
    pub async fn threads_fault(&self, endpoint: &str, fault: Value, times: u32) {
        self.fault(Twin::Threads, endpoint, fault, times).await;
    }

    /// Polls the query API until every job in `job_ids` has `status`; returns the jobs.
    pub async fn wait_for_all(
        &self,
        user: &str,
        job_ids: &[String],
        status: &str,
        within: Duration,
    ) -> Vec<Value> {
        let deadline = Instant::now() + within;
        let mut jobs = Vec::new();
        for job_id in job_ids {
            let left = deadline.saturating_duration_since(Instant::now());
            jobs.push(self.wait_for_status(user, job_id, status, left).await);
        }
        jobs
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
        if let Some(url) = &self.config.database_url {
            drop_postgres_database(url).await;
        }
    }
}

/// A sandbox twin, for its `/_sandbox` control routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Twin {
    X,
    Threads,
    Youtube,
    Tiktok,
    Linkedin,
    Meta,
    Reddit,
}

impl Twin {
    pub fn base_url(self, sandbox: &Sandbox) -> String {
        match self {
            Self::X => sandbox.x_base_url(),
            Self::Threads => sandbox.threads_base_url(),
            Self::Youtube => sandbox.youtube_base_url(),
            Self::Tiktok => sandbox.tiktok_base_url(),
            Self::Linkedin => sandbox.linkedin_base_url(),
            Self::Meta => sandbox.meta_base_url(),
            Self::Reddit => sandbox.reddit_base_url(),
        }
    }
}

/// The embedded default with `platform`'s settings removed by `unset`: connecting `platform`
/// must go to Herald's own in-process sandbox, not the test's, and its callback must succeed.
/// Returns the authorization URL, for the platform's own checks.
pub async fn connect_through_the_embedded_sandbox(
    platform: &str,
    unset: impl FnOnce(&mut Config),
) -> String {
    let app = spawn_app_configured(
        Backend::Embedded,
        SandboxConfig::default(),
        Role::All,
        |config| {
            config.sandbox = Some(true);
            unset(config);
        },
    )
    .await;
    let started: Value = app
        .post("alice", &format!("/{platform}/connect"), json!({}))
        .await
        .json()
        .await
        .unwrap();
    let url = started["authorization_url"]
        .as_str()
        .expect("a URL")
        .to_owned();
    assert!(
        !url.starts_with(&app.sandbox.base_url()),
        "the in-process sandbox, not the test's: {url}"
    );
    let callback = app.http.get(&url).send().await.unwrap();
    assert_eq!(callback.status(), 200, "{:?}", callback.text().await);
    app.stop().await;
    url
}

/// Polls `check` every 100 ms until it returns `Some`, or panics with `what` after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("{what}: not true within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Parses an RFC 3339 time.
pub fn time(value: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(value)
        .unwrap_or_else(|e| panic!("{value:?} is not RFC 3339: {e}"))
        .with_timezone(&chrono::Utc)
}

/// The payload of a history event (`data` is `{"EventType": {...}}`).
pub fn event_data(event: &Value) -> &Value {
    let kind = event["event_type"].as_str().unwrap();
    &event["data"][kind]
}
