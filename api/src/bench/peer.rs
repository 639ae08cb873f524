//! `herald bench peer`: Herald as one more peer of the queue-bench harness
//! (`/work/shared/queue-bench`, README "Adding the Rust service"), measured as the harness
//! measures BullMQ or graphile-worker, through Herald's real API on Postgres + Kafka:
//!
//! - **burst**: every job is sent to `POST /publish` (concurrent requests) while no worker
//!   runs; then the workers start. `jobs_per_s` = jobs ÷ (first attempt started → last job
//!   seen `published` in the query API); p50/p99 = request sent → seen published.
//! - **steady**: workers running; one `POST /publish` per job, open loop at `--rate` for
//!   `--warmup` + `--duration` s; percentiles over the jobs after the warm-up.
//!
//! Jobs are the harness's (`makePayload`): its text with the job's number, spread over 100
//! connected X accounts of one user, each request with its own `Idempotency-Key`. Herald's X
//! adapter publishes them to the harness's platform (`X_API_BASE`).
use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use clap::Args;
use futures::StreamExt;
use herald_domain::connection::{AccountProfile, ConnectionCommand};
use herald_domain::{ConnectionId, Platform, UserId};
use herald_infrastructure::db::Engine;
use herald_infrastructure::platforms::{x, TokenGrant};
use herald_infrastructure::secret::Secret;
use herald_infrastructure::store::CommandMetadata;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use url::Url;

use super::harness::{
    connection_index, post_text, Mode, PeerResult, RunKind, Task, HARNESS_CONNECTIONS,
};
use super::noop::NoopPosts;
use crate::config::{Config, Role};
use crate::runtime::Herald;
use crate::server::{self, Running};

/// The harness's arguments, and where Herald's own services are.
#[derive(Debug, Clone, Args)]
pub struct PeerArgs {
    /// `burst`: enqueue every job with no worker running, then drain; `steady`: open loop at
    /// `--rate`; `burst-noop`: `burst` with `--task noop`.
    #[arg(long, value_enum, default_value = "burst")]
    pub mode: Mode,
    /// `http`: publish to `--platform`; `noop`: everything but the platform call (the X
    /// adapter answers at once).
    #[arg(long, value_enum, default_value = "http")]
    pub task: Task,
    /// Jobs in a burst (steady sends rate × (warmup + duration)).
    #[arg(long, default_value_t = 20_000)]
    pub jobs: usize,
    /// Platform calls in flight at once: Herald's `HERALD_WORKER_CONCURRENCY`.
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Steady: jobs per second.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Steady: seconds measured.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Steady: seconds sent before the measured part.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// The harness's fake platform; Herald's X adapter is pointed at it (`X_API_BASE`).
    #[arg(long, default_value = "http://127.0.0.1:18080")]
    pub platform: Url,
    /// Burst: `POST /publish` requests in flight at once while enqueueing.
    #[arg(long, default_value_t = 64)]
    pub enqueue_clients: usize,
    /// Seconds to wait for the jobs to be published; those not published by then are lost.
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
    /// Postgres admin URL; the run creates and drops its own database there.
    #[arg(
        long,
        env = "HERALD_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,
    /// Kafka bootstrap servers; each run uses topics of its own prefix.
    #[arg(long, env = "HERALD_TEST_KAFKA_BROKERS")]
    pub kafka_brokers: String,
    /// Keep the scratch database for inspection instead of dropping it.
    #[arg(long)]
    pub keep_database: bool,
}

const USER: &str = "queue-bench";
const JWT_SECRET: &str = "herald-bench-peer-secret-herald-bench-peer";
/// How often the bench looks for newly published jobs.
const POLL_EVERY: Duration = Duration::from_millis(10);
/// Waiting stops early when no job was seen published for this long.
const STALLED_AFTER: Duration = Duration::from_secs(120);
/// How long a closed connection's backend takes to exit and report its counts to
/// `pg_stat_database`, with room to spare.
const STATS_SETTLE: Duration = Duration::from_millis(700);

/// Runs one peer measurement and prints the harness's line (or `status=error` with why).
pub async fn run(args: PeerArgs) -> anyhow::Result<()> {
    let kind = RunKind::of(args.mode, args.task);
    let clock = Clock::start();
    let (database_url, database) =
        herald_infrastructure::db::create_scratch_database(&args.database_url, "herald_bench")
            .await?;
    let data_dir = std::env::temp_dir().join(format!(
        "herald-bench-peer-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let outcome = measure(&args, &kind, &clock, &database_url, &database, &data_dir).await;
    if args.keep_database {
        eprintln!("kept database: {database_url}");
    } else {
        super::drop_database(&args.database_url, &database).await;
    }
    let _ = std::fs::remove_dir_all(&data_dir);
    match outcome {
        Ok(result) => {
            println!("{}", result.line());
            Ok(())
        }
        Err(error) => {
            println!(
                "peer=herald mode={} status=error error={:?}",
                kind.label,
                format!("{error:#}")
            );
            Err(error)
        }
    }
}

/// Milliseconds since the run began, for `Instant`s and for timestamps Herald stored.
#[derive(Debug, Clone, Copy)]
struct Clock {
    start: Instant,
    start_epoch_ms: f64,
}

impl Clock {
    fn start() -> Self {
        Self {
            start: Instant::now(),
            start_epoch_ms: Utc::now().timestamp_micros() as f64 / 1000.0,
        }
    }

    fn now_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1000.0
    }

    fn ms_since_start_of(&self, epoch_ms: f64) -> f64 {
        epoch_ms - self.start_epoch_ms
    }
}

/// One job Herald accepted.
#[derive(Debug, Clone)]
struct Accepted {
    job_id: String,
    /// When its request was sent (the harness's `enq`).
    sent_ms: f64,
    /// Steady's warm-up jobs are published but not measured.
    warm: bool,
}

/// What a burst or steady run observed, before the counts from the store.
struct Observed {
    accepted: Vec<Accepted>,
    /// Jobs the run meant to publish (accepted or not).
    expected: usize,
    /// Each job id's first sighting as published in the query API.
    seen: HashMap<String, f64>,
    /// Burst: when the workers were started.
    workers_started_ms: Option<f64>,
    enqueue_per_s: Option<f64>,
    enqueue_errors: usize,
    /// Steady: when the first measured job was sent.
    first_measured_ms: Option<f64>,
    /// Steady: the warm-up jobs among `expected`.
    warm: usize,
    /// Jobs sent besides `expected` (steady's readiness probe).
    probes: usize,
    /// Reads the bench made of the scratch database (the watcher's, the probe's
    /// `GET /jobs/{id}`): each is one transaction there.
    reads: u64,
}

async fn measure(
    args: &PeerArgs,
    kind: &RunKind,
    clock: &Clock,
    database_url: &str,
    database: &str,
    data_dir: &std::path::Path,
) -> anyhow::Result<PeerResult> {
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(
        kind.burst || args.rate > 0.0,
        "--rate must be above 0 in steady mode"
    );
    let config = peer_config(args, database_url, data_dir);
    let user = UserId::parse(USER).context("the bench user")?;

    // Set-up in a Herald of its own, closed before counting, so the count of commits holds
    // only the run.
    let setup = Herald::build(config.clone()).await?;
    let connections = connect_accounts(&setup, &user).await?;
    close_pools(&setup).await;
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&args.database_url)
        .await
        .context("connecting to Postgres")?;
    tokio::time::sleep(STATS_SETTLE).await;
    let commits_before = commits(&admin, database).await?;
    let plain = reqwest::Client::new();
    let posts_before = match kind.task {
        Task::Http => platform_posts(&plain, &args.platform).await?,
        Task::Noop => 0,
    };

    let api = server::start(
        Herald::build(config.clone()).await?,
        TcpListener::bind("127.0.0.1:0")?,
        Role::Api,
    )
    .await?;
    let token = crate::auth::mint(JWT_SECRET.as_bytes(), USER, Duration::from_secs(24 * 3600))?;
    let client = ApiClient {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(args.enqueue_clients + 16)
            .build()?,
        base: api.url.clone(),
        token,
    };
    let noop_posts = Arc::new(AtomicU64::new(0));
    let workers = Workers {
        config: config.clone(),
        noop_posts: (kind.task == Task::Noop).then(|| noop_posts.clone()),
    };
    let run = if kind.burst {
        burst(args, database_url, clock, &client, &connections, &workers).await
    } else {
        steady(args, database_url, clock, &client, &connections, &workers).await
    };
    let api_herald = api.herald.clone();
    api.stop().await;
    close_pools(&api_herald).await;
    let (observed, running_workers) = run?;
    let workers_herald = running_workers.herald.clone();
    running_workers.stop().await;
    close_pools(&workers_herald).await;

    tokio::time::sleep(STATS_SETTLE).await;
    let commits_after = commits(&admin, database).await?;
    admin.close().await;
    let posts = match kind.task {
        Task::Http => Some(platform_posts(&plain, &args.platform).await? - posts_before),
        Task::Noop => None,
    };
    // Read after the count, so these reads are not in it.
    let scratch = PgPoolOptions::new()
        .max_connections(1)
        .connect(database_url)
        .await?;
    let statuses: HashMap<String, String> =
        sqlx::query_as("SELECT job_id, status FROM job_views WHERE user_id = $1")
            .bind(USER)
            .fetch_all(&scratch)
            .await?
            .into_iter()
            .collect();
    // The first `AttemptStarted` is the first handler start (events are stored as serde's
    // externally tagged JSON).
    let first_start_epoch_ms: Option<f64> = sqlx::query_scalar(
        "SELECT (EXTRACT(EPOCH FROM MIN((payload -> 'AttemptStarted' ->> 'at')::timestamptz)) * 1000)::float8
         FROM events WHERE event_type = 'AttemptStarted'",
    )
    .fetch_one(&scratch)
    .await?;
    scratch.close().await;

    let published = |id: &str| statuses.get(id).is_some_and(|s| s == "published");
    let published_count = observed
        .accepted
        .iter()
        .filter(|a| published(&a.job_id))
        .count();
    let failed = observed
        .accepted
        .iter()
        .filter(|a| statuses.get(&a.job_id).is_some_and(|s| s == "failed"))
        .count();
    let poll_missed = observed
        .accepted
        .iter()
        .filter(|a| published(&a.job_id) && !observed.seen.contains_key(&a.job_id))
        .count();
    let mut latencies_ms: Vec<f64> = observed
        .accepted
        .iter()
        .filter(|a| !a.warm)
        .filter_map(|a| observed.seen.get(&a.job_id).map(|seen| seen - a.sent_ms))
        .collect();
    latencies_ms.sort_by(|a, b| a.total_cmp(b));
    let last_seen_ms = observed
        .accepted
        .iter()
        .filter_map(|a| observed.seen.get(&a.job_id))
        .copied()
        .fold(f64::NAN, f64::max);
    let (jobs, jobs_per_s) = if kind.burst {
        let first_start_ms = first_start_epoch_ms.map(|ms| clock.ms_since_start_of(ms));
        let window_s = first_start_ms.map_or(f64::NAN, |first| (last_seen_ms - first) / 1000.0);
        (observed.expected, observed.expected as f64 / window_s)
    } else {
        // As the harness: the measured jobs over first measured send → last job seen.
        let first = observed.first_measured_ms.unwrap_or(f64::NAN);
        let measured = observed.expected - observed.warm;
        (
            measured,
            measured as f64 / ((last_seen_ms - first) / 1000.0),
        )
    };
    let all_jobs = (observed.expected + observed.probes) as u64;
    let platform_calls = posts.unwrap_or_else(|| noop_posts.load(Ordering::Relaxed));
    let transactions = (commits_after - commits_before) as f64 - observed.reads as f64;
    let mut extra = vec![
        ("enqueue_errors", observed.enqueue_errors.to_string()),
        ("poll_missed", poll_missed.to_string()),
        ("bench_reads", observed.reads.to_string()),
    ];
    if let (Some(started), Some(first)) = (observed.workers_started_ms, first_start_epoch_ms) {
        extra.push((
            "first_start_s",
            format!("{:.2}", (clock.ms_since_start_of(first) - started) / 1000.0),
        ));
    }
    if kind.burst {
        extra.push(("enqueue_clients", args.enqueue_clients.to_string()));
    }
    Ok(PeerResult {
        label: kind.label.clone(),
        jobs,
        jobs_per_s,
        latencies_ms,
        enqueue_per_s: observed.enqueue_per_s,
        concurrency: args.concurrency,
        rate: (!kind.burst).then_some(args.rate),
        posts,
        failed,
        lost: observed.expected.saturating_sub(published_count),
        dups: platform_calls.saturating_sub(all_jobs),
        commits_per_job: transactions / all_jobs as f64,
        wall_s: clock.now_ms() / 1000.0,
        extra,
    })
}

/// Herald on the scratch database and Kafka, its X adapter talking to the harness's platform
/// with `concurrency` publishing attempts at once, and no per-user limits: the bench is one
/// user sending as fast as it can.
fn peer_config(args: &PeerArgs, database_url: &str, data_dir: &std::path::Path) -> Config {
    let mut config = Config::embedded(data_dir.to_path_buf());
    config.database_url = Some(database_url.to_owned());
    config.kafka_brokers = Some(args.kafka_brokers.clone());
    config.kafka_topic_prefix = format!("benchpeer{}.", uuid::Uuid::new_v4().simple());
    config.sandbox = Some(false);
    // An app of its own with a custom base: X's endpoints, OAuth's too, live under it.
    config
        .platforms
        .set("X_CLIENT_ID", "herald-queue-bench")
        .set("X_API_BASE", args.platform.as_str());
    config.jwt_secret = Some(JWT_SECRET.into());
    config.vault_key = Some(herald_infrastructure::vault::generate_key());
    config.api_queries_per_minute = 0;
    config.api_commands_per_minute = 0;
    config.max_pending_jobs_per_user = 0;
    config.max_connections_per_user = 0;
    config.worker_concurrency = args.concurrency;
    config
}

/// Connects the harness's 100 accounts (`conn_0` … `conn_99`, bearer `bench-token-conn_N` as
/// the harness's own peers send) for the bench user. The fake platform has no OAuth, so this
/// does what `POST /{platform}/connect/complete` does once OAuth is done: the tokens into the
/// vault, then `Connect` through the command path.
async fn connect_accounts(herald: &Herald, user: &UserId) -> anyhow::Result<Vec<String>> {
    let scopes: Vec<String> = x::DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect();
    let mut ids = Vec::with_capacity(HARNESS_CONNECTIONS);
    for n in 0..HARNESS_CONNECTIONS {
        let account = AccountProfile {
            account_id: format!("queue-bench-{n}"),
            username: format!("conn_{n}"),
            display_name: format!("queue-bench conn_{n}"),
        };
        let connection_id = ConnectionId::for_account(user, Platform::X, &account.account_id);
        // No expiry and no refresh token: the refresher leaves it alone.
        let grant = TokenGrant {
            access_token: Secret::new(format!("bench-token-conn_{n}")),
            refresh_token: None,
            expires_at: None,
            scopes: scopes.clone(),
            refresh_token_expires_at: None,
            login_id: None,
        };
        herald.vault.store(&connection_id, &grant).await?;
        herald
            .connections
            .execute(
                &connection_id.to_string(),
                ConnectionCommand::Connect {
                    connection_id,
                    user_id: user.clone(),
                    platform: Platform::X,
                    account,
                    scopes: scopes.clone(),
                    token_expires_at: None,
                    can_refresh: false,
                    login_expires_at: None,
                    at: Utc::now(),
                },
                &CommandMetadata::actor(USER),
            )
            .await?;
        ids.push(connection_id.to_string());
    }
    Ok(ids)
}

/// Starts Herald's workers (projections, relay, scheduler, publisher) in a Herald of their
/// own, as production runs them apart from the API.
struct Workers {
    config: Config,
    /// Set for the noop task: the X adapter is swapped for one that posts nothing.
    noop_posts: Option<Arc<AtomicU64>>,
}

impl Workers {
    async fn start(&self) -> anyhow::Result<Running> {
        let mut herald = Herald::build(self.config.clone()).await?;
        if let Some(created) = &self.noop_posts {
            let x = herald.adapters.get(Platform::X)?;
            herald.adapters = herald
                .adapters
                .clone()
                .with(Arc::new(NoopPosts::new(x, created.clone())));
        }
        server::start(herald, TcpListener::bind("127.0.0.1:0")?, Role::Worker).await
    }
}

/// Closes a stopped Herald's database connections, so their backends exit and report their
/// transactions to `pg_stat_database`.
async fn close_pools(herald: &Herald) {
    herald.db.any.close().await;
    if let Engine::Postgres(pool) = &herald.db.engine {
        pool.close().await;
    }
}

/// Transactions committed in `database` so far.
async fn commits(admin: &PgPool, database: &str) -> anyhow::Result<i64> {
    sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
        .bind(database)
        .fetch_one(admin)
        .await
        .context("reading pg_stat_database")
}

/// Posts the harness's platform has counted (`GET /stats`).
async fn platform_posts(http: &reqwest::Client, platform: &Url) -> anyhow::Result<u64> {
    let stats: Value = http
        .get(x_join(platform, "stats"))
        .send()
        .await
        .context("the platform's GET /stats")?
        .error_for_status()?
        .json()
        .await?;
    stats["tweets"]
        .as_u64()
        .context("the platform's /stats has no tweets count")
}

fn x_join(base: &Url, path: &str) -> String {
    format!("{}/{path}", base.as_str().trim_end_matches('/'))
}

/// Herald's API as the harness's producer uses it.
#[derive(Clone)]
struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl ApiClient {
    /// `POST /publish` of job `n`'s post to `connection`, now; returns the job id.
    async fn publish(&self, n: usize, connection: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .post(format!("{}/api/v1/platforms/publish", self.base))
            .bearer_auth(&self.token)
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&json!({"connection_ids": [connection], "content": {"text": post_text(n)}}))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        anyhow::ensure!(
            status.is_success(),
            "POST /publish answered {status}: {body}"
        );
        Ok(body["jobs"][0]["job_id"]
            .as_str()
            .context("no job id in the answer")?
            .to_owned())
    }

    /// One job's status (`GET /jobs/{id}`); `None` while the read model has no row for it.
    async fn status(&self, job_id: &str) -> anyhow::Result<Option<String>> {
        let response = self
            .http
            .get(format!("{}/api/v1/platforms/jobs/{job_id}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let job: Value = response.error_for_status()?.json().await?;
        Ok(job["status"].as_str().map(str::to_owned))
    }
}

/// Watches the read model the query API answers from (`job_views`: `GET /jobs/{id}` is one
/// SELECT of its row, with no cache) for the jobs accepted so far, noting when each is first
/// seen published or failed. The API's list cannot do it: it is newest-created first and
/// cannot page, while a burst is published out of creation order (by Kafka partition and
/// per-user rank), so older jobs published late would never be listed. The oldest
/// `FRONTIER` unseen jobs are looked up every `POLL_EVERY`, all of them every `SWEEP_EVERY`.
struct Watch {
    /// Accepted job ids not yet handed to the watcher, in the order they were sent.
    incoming: Arc<Mutex<Vec<String>>>,
    /// Each ended job's first sighting (ms) and whether it was published (else failed).
    ended: Arc<Mutex<HashMap<String, (f64, bool)>>>,
    reads: Arc<AtomicU64>,
    task: JoinHandle<()>,
    pool: PgPool,
}

/// Unseen jobs looked up on every poll: a burst publishes roughly in sending order.
const FRONTIER: usize = 1000;
/// How often every unseen job is looked up, for those published far out of order.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl Watch {
    async fn start(database_url: &str, clock: Clock) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(database_url)
            .await?;
        let incoming: Arc<Mutex<Vec<String>>> = Arc::default();
        let ended: Arc<Mutex<HashMap<String, (f64, bool)>>> = Arc::default();
        let reads = Arc::new(AtomicU64::new(0));
        let task = {
            let (pool, incoming, ended, reads) =
                (pool.clone(), incoming.clone(), ended.clone(), reads.clone());
            tokio::spawn(async move {
                let mut unseen: Vec<String> = Vec::new();
                let mut swept = Instant::now();
                loop {
                    unseen.append(&mut *incoming.lock().await);
                    let sweep = swept.elapsed() >= SWEEP_EVERY;
                    if sweep {
                        swept = Instant::now();
                    }
                    let looked_up = if sweep {
                        unseen.len()
                    } else {
                        unseen.len().min(FRONTIER)
                    };
                    if looked_up > 0 {
                        // A join, not `job_id = ANY($1)`: with a prepared statement's generic
                        // plan Postgres would scan the table testing each row against the
                        // whole array, and the watcher would take the CPU it measures.
                        let rows: Result<Vec<(String, String)>, _> = sqlx::query_as(
                            "SELECT v.job_id, v.status FROM unnest($1::text[]) AS u (job_id)
                             JOIN job_views v ON v.job_id = u.job_id
                             WHERE v.status IN ('published', 'failed')",
                        )
                        .bind(&unseen[..looked_up])
                        .fetch_all(&pool)
                        .await;
                        let at = clock.now_ms();
                        reads.fetch_add(1, Ordering::Relaxed);
                        if let Ok(rows) = rows {
                            if !rows.is_empty() {
                                let mut ended = ended.lock().await;
                                for (job_id, status) in rows {
                                    ended.entry(job_id).or_insert((at, status == "published"));
                                }
                                unseen.retain(|id| !ended.contains_key(id));
                            }
                        }
                    }
                    tokio::time::sleep(POLL_EVERY).await;
                }
            })
        };
        Ok(Self {
            incoming,
            ended,
            reads,
            task,
            pool,
        })
    }

    /// Where to hand accepted job ids to the watcher, in the order they were sent.
    fn inbox(&self) -> Arc<Mutex<Vec<String>>> {
        self.incoming.clone()
    }

    /// Waits until `count` jobs have ended, until `deadline`, or until none ended for
    /// `STALLED_AFTER`.
    async fn wait_for(&self, count: usize, deadline: Instant) {
        let mut last_count = 0;
        let mut last_progress = Instant::now();
        loop {
            let ended = self.ended.lock().await.len();
            if ended != last_count {
                last_count = ended;
                last_progress = Instant::now();
            }
            let now = Instant::now();
            if ended >= count || now >= deadline || now - last_progress >= STALLED_AFTER {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops watching (its connection closed, so its reads are counted by Postgres); returns
    /// each published job's first sighting and the reads made.
    async fn stop(self) -> (HashMap<String, f64>, u64) {
        self.task.abort();
        let _ = self.task.await;
        self.pool.close().await;
        let published = self
            .ended
            .lock()
            .await
            .iter()
            .filter(|(_, (_, published))| *published)
            .map(|(id, (at, _))| (id.clone(), *at))
            .collect();
        (published, self.reads.load(Ordering::Relaxed))
    }
}

/// Burst: every job accepted by the API while no worker runs, then the workers drain.
async fn burst(
    args: &PeerArgs,
    database_url: &str,
    clock: &Clock,
    client: &ApiClient,
    connections: &[String],
    workers: &Workers,
) -> anyhow::Result<(Observed, Running)> {
    let enqueue_started = clock.now_ms();
    let results: Vec<(f64, anyhow::Result<String>)> = futures::stream::iter(0..args.jobs)
        .map(|n| async move {
            let sent_ms = clock.now_ms();
            let job = client.publish(n, &connections[connection_index(n)]).await;
            (sent_ms, job)
        })
        .buffer_unordered(args.enqueue_clients.max(1))
        .collect()
        .await;
    let enqueue_s = (clock.now_ms() - enqueue_started) / 1000.0;
    let (mut accepted, enqueue_errors) = sort_out(
        results
            .into_iter()
            .map(|(sent_ms, job)| (sent_ms, false, job)),
    );
    accepted.sort_by(|a, b| a.sent_ms.total_cmp(&b.sent_ms));
    let watch = Watch::start(database_url, *clock).await?;
    watch
        .inbox()
        .lock()
        .await
        .extend(accepted.iter().map(|a| a.job_id.clone()));
    let workers_started_ms = clock.now_ms();
    let running = workers.start().await?;
    watch
        .wait_for(
            accepted.len(),
            Instant::now() + Duration::from_secs(args.timeout),
        )
        .await;
    let (seen, reads) = watch.stop().await;
    Ok((
        Observed {
            enqueue_per_s: Some(accepted.len() as f64 / enqueue_s),
            accepted,
            expected: args.jobs,
            seen,
            workers_started_ms: Some(workers_started_ms),
            enqueue_errors,
            first_measured_ms: None,
            warm: 0,
            probes: 0,
            reads,
        },
        running,
    ))
}

/// Steady: workers running, one request per job at `rate`, open loop.
async fn steady(
    args: &PeerArgs,
    database_url: &str,
    clock: &Clock,
    client: &ApiClient,
    connections: &[String],
    workers: &Workers,
) -> anyhow::Result<(Observed, Running)> {
    let running = workers.start().await?;
    let probe_reads = match ready(client, &connections[0]).await {
        Ok(reads) => reads,
        Err(error) => {
            running.stop().await;
            return Err(error);
        }
    };

    let total = (args.rate * (args.warmup + args.duration)).round() as usize;
    let warm = (args.rate * args.warmup).round() as usize;
    let watch = match Watch::start(database_url, *clock).await {
        Ok(watch) => watch,
        Err(error) => {
            running.stop().await;
            return Err(error);
        }
    };
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    let mut sent = 0;
    let mut first_measured_ms = None;
    while sent < total {
        let due = ((started.elapsed().as_secs_f64() * args.rate) as usize + 1).min(total);
        while sent < due {
            let n = sent;
            sent += 1;
            let sent_ms = clock.now_ms();
            if n == warm {
                first_measured_ms = Some(sent_ms);
            }
            let (client, connection) = (client.clone(), connections[connection_index(n)].clone());
            let inbox = watch.inbox();
            senders.spawn(async move {
                let job = client.publish(n, &connection).await;
                if let Ok(job_id) = &job {
                    inbox.lock().await.push(job_id.clone());
                }
                (sent_ms, n < warm, job)
            });
        }
        let next = started + Duration::from_secs_f64(sent as f64 / args.rate);
        tokio::time::sleep_until(next.into()).await;
    }
    let (accepted, enqueue_errors) = sort_out(senders.join_all().await);
    watch
        .wait_for(
            accepted.len(),
            Instant::now() + Duration::from_secs(args.timeout),
        )
        .await;
    let (seen, reads) = watch.stop().await;
    Ok((
        Observed {
            accepted,
            expected: total,
            seen,
            workers_started_ms: None,
            enqueue_per_s: None,
            enqueue_errors,
            first_measured_ms,
            warm,
            probes: 1,
            reads: reads + probe_reads,
        },
        running,
    ))
}

/// The harness lets its workers connect before the clock starts; Herald's are ready once a
/// first job has gone all the way through (Kafka consumers joined, relay running). Returns
/// the query API reads it took.
async fn ready(client: &ApiClient, connection: &str) -> anyhow::Result<u64> {
    let probe = client.publish(usize::MAX, connection).await?;
    let mut reads = 0;
    let ready_by = Instant::now() + Duration::from_secs(120);
    loop {
        reads += 1;
        if client.status(&probe).await?.as_deref() == Some("published") {
            return Ok(reads);
        }
        anyhow::ensure!(
            Instant::now() < ready_by,
            "Herald's workers did not publish a first job within 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The accepted jobs, and how many requests failed (the first failure is told on stderr).
fn sort_out(
    results: impl IntoIterator<Item = (f64, bool, anyhow::Result<String>)>,
) -> (Vec<Accepted>, usize) {
    let mut accepted = Vec::new();
    let mut errors = 0;
    for (sent_ms, warm, job) in results {
        match job {
            Ok(job_id) => accepted.push(Accepted {
                job_id,
                sent_ms,
                warm,
            }),
            Err(error) => {
                if errors == 0 {
                    eprintln!("herald bench peer: a publish request failed: {error:#}");
                }
                errors += 1;
            }
        }
    }
    (accepted, errors)
}
