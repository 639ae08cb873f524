//! `herald bench`: drives the production pipeline (Postgres + Kafka + workers + sandbox X) and,
//! in the same run, a baseline of raw single-row INSERTs into the same Postgres at the same
//! client count, and reports ratios against it:
//!
//! 1. command throughput: events/s accepted through `POST /publish` ÷ raw inserts/s;
//! 2. end-to-end latency at a steady rate: publish accepted → `published` visible in the
//!    query API, p50 and p99;
//! 3. scheduling delay: how long after its `publish_at` a scheduled job starts.
//!
//! `herald bench peer` (`peer.rs`) measures Herald instead as one more peer of the queue-bench
//! harness, the way it measures job queues.
pub mod harness;
mod noop;
pub mod peer;

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use herald_domain::Platform;
use herald_infrastructure::platforms::registry;
use herald_sandbox::{Sandbox, SandboxConfig};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::config::{Config, Role};
use crate::runtime::Herald;

/// `herald bench` measures the pipeline against a raw-insert baseline; `herald bench peer`
/// joins the queue-bench harness.
#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BenchCommand {
    #[command(subcommand)]
    pub peer: Option<BenchPeer>,
    #[command(flatten)]
    pub pipeline: BenchArgs,
}

#[derive(Debug, Clone, Subcommand)]
pub enum BenchPeer {
    /// Run as a queue-bench peer: the harness's jobs through Herald's API, published to its
    /// fake platform; prints one `peer=herald mode=...` line (docs/bench.md).
    Peer(peer::PeerArgs),
}

/// Benchmark settings.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Postgres admin URL; the benchmark creates and drops its own database there.
    #[arg(
        long,
        env = "HERALD_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,
    /// Kafka bootstrap servers (e.g. from `eval "$(bash scripts/test-services.sh)"`).
    /// Optional to clap only so that `herald bench peer` parses without it; the run needs it.
    #[arg(long, env = "HERALD_TEST_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Concurrent clients for the throughput phase (and the baseline).
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Seconds per throughput phase.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Jobs per second in the latency phase.
    #[arg(long, default_value_t = 100)]
    pub rate: u64,
    /// Jobs measured in the latency phase.
    #[arg(long, default_value_t = 1000)]
    pub jobs: usize,
    /// Scheduled jobs measured for scheduling delay.
    #[arg(long, default_value_t = 50)]
    pub scheduled: usize,
    /// Keep the scratch database for inspection instead of dropping it.
    #[arg(long)]
    pub keep_database: bool,
}

const USER: &str = "bench";

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command.peer {
        Some(BenchPeer::Peer(args)) => peer::run(args).await,
        None => run_pipeline(command.pipeline).await,
    }
}

async fn run_pipeline(args: BenchArgs) -> anyhow::Result<()> {
    let kafka_brokers = args
        .kafka_brokers
        .clone()
        .context("set --kafka-brokers or HERALD_TEST_KAFKA_BROKERS")?;
    let (database_url, database) =
        herald_infrastructure::db::create_scratch_database(&args.database_url, "herald_bench")
            .await?;
    let result = run_in(&args, &kafka_brokers, &database_url).await;
    if args.keep_database {
        println!("kept database: {database_url}");
    } else {
        drop_database(&args.database_url, &database).await;
    }
    result
}

async fn run_in(args: &BenchArgs, kafka_brokers: &str, database_url: &str) -> anyhow::Result<()> {
    let mut sandbox_config = SandboxConfig::default();
    // The sandbox stands in for a platform with room to spare; Herald's own limits are measured.
    sandbox_config.x.rate_limits.create_tweet = u32::MAX;
    sandbox_config.x.rate_limits.user_tweets = u32::MAX;
    sandbox_config.x.rate_limits.users_me = u32::MAX;
    let sandbox = Sandbox::start("127.0.0.1:0", sandbox_config).await?;
    let data_dir =
        std::env::temp_dir().join(format!("herald-bench-{}", uuid::Uuid::new_v4().simple()));
    let mut config = Config::embedded(data_dir.clone());
    config.database_url = Some(database_url.to_string());
    config.kafka_brokers = Some(kafka_brokers.to_owned());
    config.kafka_topic_prefix = format!("bench{}.", uuid::Uuid::new_v4().simple());
    config.sandbox = Some(false);
    let x = registry::entry(Platform::X);
    let twin = crate::sandbox::twin(&sandbox, x.twin).context("the sandbox X twin")?;
    config.platforms.use_twin(x.env_prefix, &twin);
    config.jwt_secret = Some("herald-bench-secret-herald-bench-secret".into());
    config.vault_key = Some(herald_infrastructure::vault::generate_key());
    // The bench is one user sending as fast as it can.
    config.api_queries_per_minute = 0;
    config.api_commands_per_minute = 0;
    config.max_pending_jobs_per_user = 0;
    let token = crate::auth::mint(
        b"herald-bench-secret-herald-bench-secret",
        USER,
        Duration::from_secs(3600),
    )?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;

    // Phase 1: the command API alone (production runs API and worker processes apart), then
    // the baseline at the same client count.
    let api = crate::server::start(
        Herald::build(config.clone()).await?,
        TcpListener::bind("127.0.0.1:0")?,
        Role::Api,
    )
    .await?;
    let connection = connect(&http, &api.url, &token).await?;
    let baseline = raw_insert_rate(
        database_url,
        args.clients,
        Duration::from_secs(args.seconds),
    )
    .await?;
    let commands = publish_rate(
        &http,
        &api.url,
        &token,
        &connection,
        args.clients,
        Duration::from_secs(args.seconds),
    )
    .await?;
    println!(
        "baseline: raw single-row INSERTs into Postgres, {} clients: {baseline:.0}/s",
        args.clients
    );
    println!(
        "command API: JobScheduled events accepted via POST /publish, {} clients: {commands:.0}/s",
        args.clients
    );
    println!(
        "ratio command events/s ÷ raw inserts/s: {:.2} (target ≥ 0.5)",
        commands / baseline
    );

    // Workers join: projections, scheduler, publisher, relay.
    let workers = crate::server::start(
        Herald::build(config.clone()).await?,
        TcpListener::bind("127.0.0.1:0")?,
        Role::Worker,
    )
    .await?;
    // Let the workers drain the throughput phase's jobs before measuring latency.
    wait_until_idle(&workers.herald).await?;

    // Phase 2: steady rate, latency from accepted to visible as published.
    let latencies =
        steady_latency(&http, &api.url, &token, &connection, args.rate, args.jobs).await?;
    let p50 = percentile(&latencies, 0.50);
    let p99 = percentile(&latencies, 0.99);
    println!(
        "publish accepted → published visible in the query API at {} jobs/s, {} jobs: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (target p99 ≤ 250 ms)",
        args.rate,
        latencies.len(),
        p50,
        p99,
        latencies.last().copied().unwrap_or_default()
    );
    println!("ratio p99 ÷ 250 ms target: {:.2}", p99 / 250.0);

    // Phase 3: scheduling delay.
    let delays = scheduling_delay(&http, &api.url, &token, &connection, args.scheduled).await?;
    println!(
        "scheduled job start after publish_at, {} jobs: p50 {:.0} ms, p99 {:.0} ms (target: within 1000 ms)",
        delays.len(),
        percentile(&delays, 0.50),
        percentile(&delays, 0.99)
    );
    workers.stop().await;
    api.stop().await;
    let _ = std::fs::remove_dir_all(data_dir);
    Ok(())
}

async fn drop_database(admin_url: &str, name: &str) {
    if let Ok(pool) = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(admin_url)
        .await
    {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&pool)
            .await;
    }
}

async fn connect(http: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<String> {
    let started: Value = http
        .post(format!("{base}/api/v1/platforms/x/connect"))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let url = started["authorization_url"]
        .as_str()
        .context("no authorization_url")?;
    let authorized: Value = http
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let connected: Value = http
        .post(format!("{base}/api/v1/platforms/x/connect/complete"))
        .bearer_auth(token)
        .json(&serde_json::json!({"connect_code": authorized["connect_code"]}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(connected["connection_id"]
        .as_str()
        .context("no connection_id")?
        .to_string())
}

/// Single-row INSERTs of an event-sized JSON row, each its own transaction, by `clients` tasks.
async fn raw_insert_rate(url: &str, clients: usize, length: Duration) -> anyhow::Result<f64> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(clients as u32)
        .connect(url)
        .await?;
    sqlx::query("CREATE TABLE bench_baseline (id bigserial PRIMARY KEY, aggregate_id text NOT NULL, payload json NOT NULL)")
        .execute(&pool)
        .await?;
    let payload = json!({"JobScheduled": {"text": "a typical post of moderate length for the baseline", "n": 1}});
    run_clients(clients, length, move |_, _| {
        let (pool, payload) = (pool.clone(), payload.clone());
        async move {
            sqlx::query("INSERT INTO bench_baseline (aggregate_id, payload) VALUES ($1, $2)")
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(&payload)
                .execute(&pool)
                .await?;
            Ok(())
        }
    })
    .await
}

/// Runs `clients` loops of `operation(client, n)` until `length` has passed; returns
/// operations per second.
async fn run_clients<F, Fut>(clients: usize, length: Duration, operation: F) -> anyhow::Result<f64>
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let deadline = started + length;
    let mut tasks = Vec::new();
    for client in 0..clients {
        let operation = operation.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                operation(client, done).await?;
                done += 1;
            }
            anyhow::Ok(done)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64().max(length.as_secs_f64()))
}

async fn publish_one(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    connection: &str,
    text: String,
) -> anyhow::Result<String> {
    let response: Value = http
        .post(format!("{base}/api/v1/platforms/publish"))
        .bearer_auth(token)
        .json(&json!({"connection_ids": [connection], "content": {"text": text}}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(response["jobs"][0]["job_id"]
        .as_str()
        .context("no job id")?
        .to_string())
}

async fn publish_rate(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    connection: &str,
    clients: usize,
    length: Duration,
) -> anyhow::Result<f64> {
    let (http, base, token, connection) = (
        http.clone(),
        base.to_string(),
        token.to_string(),
        connection.to_string(),
    );
    run_clients(clients, length, move |client, n| {
        let (http, base, token, connection) = (
            http.clone(),
            base.clone(),
            token.clone(),
            connection.clone(),
        );
        async move {
            publish_one(
                &http,
                &base,
                &token,
                &connection,
                format!("throughput {client}-{n}"),
            )
            .await
            .map(|_| ())
        }
    })
    .await
}

/// Waits until every job accepted so far is finished in the read model and unscheduled.
async fn wait_until_idle(herald: &Herald) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        let accepted: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE event_type = 'JobScheduled'")
                .fetch_one(&herald.db.any)
                .await?;
        let finished: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM job_views WHERE status IN ('published', 'failed', 'cancelled')",
        )
        .fetch_one(&herald.db.any)
        .await?;
        let scheduled: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM job_schedule")
            .fetch_one(&herald.db.any)
            .await?;
        if finished == accepted && scheduled == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("the workers did not drain the throughput phase within 10 minutes")
}

/// Publishes `jobs` at `rate`/s and records, per job, accepted → first seen published.
async fn steady_latency(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    connection: &str,
    rate: u64,
    jobs: usize,
) -> anyhow::Result<Vec<f64>> {
    let accepted: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let done = Arc::new(tokio::sync::Notify::new());
    // One poller reads the newest published jobs, as a client watching the query API would.
    let poller = {
        let (http, base, token) = (http.clone(), base.to_string(), token.to_string());
        let (accepted, seen, done) = (accepted.clone(), seen.clone(), done.clone());
        tokio::spawn(async move {
            loop {
                let response = http
                    .get(format!(
                        "{base}/api/v1/platforms/jobs?status=published&limit=100"
                    ))
                    .bearer_auth(&token)
                    .send()
                    .await;
                let now = Instant::now();
                if let Ok(response) = response {
                    if let Ok(body) = response.json::<Value>().await {
                        let accepted = accepted.lock().await;
                        let mut seen = seen.lock().await;
                        for job in body["jobs"].as_array().into_iter().flatten() {
                            if let Some(id) = job["job_id"].as_str() {
                                if accepted.contains_key(id) {
                                    seen.entry(id.to_string()).or_insert(now);
                                }
                            }
                        }
                        if seen.len() >= jobs {
                            done.notify_one();
                            return;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut senders = Vec::new();
    for n in 0..jobs {
        ticker.tick().await;
        let (http, base, token, connection) = (
            http.clone(),
            base.to_string(),
            token.to_string(),
            connection.to_string(),
        );
        let accepted = accepted.clone();
        senders.push(tokio::spawn(async move {
            let job_id =
                publish_one(&http, &base, &token, &connection, format!("latency {n}")).await?;
            accepted.lock().await.insert(job_id, Instant::now());
            anyhow::Ok(())
        }));
    }
    for sender in senders {
        sender.await??;
    }
    tokio::time::timeout(Duration::from_secs(120), done.notified())
        .await
        .context("not every job was seen published within 2 minutes")?;
    poller.abort();
    let accepted = accepted.lock().await;
    let seen = seen.lock().await;
    let mut latencies: Vec<f64> = seen
        .iter()
        .filter_map(|(id, at)| {
            accepted
                .get(id)
                .map(|start| at.saturating_duration_since(*start).as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(|a, b| a.total_cmp(b));
    Ok(latencies)
}

/// Schedules jobs two seconds ahead and measures `published_at - publish_at` from the query API.
async fn scheduling_delay(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    connection: &str,
    count: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut ids = Vec::new();
    for n in 0..count {
        let at = chrono::Utc::now() + chrono::Duration::milliseconds(2000 + (n as i64 * 20));
        let response: Value = http
            .post(format!("{base}/api/v1/platforms/schedule"))
            .bearer_auth(token)
            .json(&json!({"connection_ids": [connection], "content": {"text": format!("scheduled {n}")}, "publish_at": at.to_rfc3339()}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        ids.push(
            response["jobs"][0]["job_id"]
                .as_str()
                .context("no job id")?
                .to_string(),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut delays = Vec::new();
    for id in ids {
        loop {
            let job: Value = http
                .get(format!("{base}/api/v1/platforms/jobs/{id}"))
                .bearer_auth(token)
                .send()
                .await?
                .json()
                .await?;
            if job["status"] == "published" {
                let due = chrono::DateTime::parse_from_rfc3339(
                    job["publish_at"].as_str().context("publish_at")?,
                )?;
                let published = chrono::DateTime::parse_from_rfc3339(
                    job["published_at"].as_str().context("published_at")?,
                )?;
                delays.push((published - due).num_milliseconds() as f64);
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "scheduled job {id} was not published within a minute"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    delays.sort_by(|a, b| a.total_cmp(b));
    Ok(delays)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchCommand,
    }

    /// Exactly what the harness's run.sh passes to `$EXTRA_PEER_CMD`.
    #[test]
    fn bench_peer_takes_the_harness_arguments() {
        let cli = Cli::try_parse_from([
            "bench",
            "peer",
            "--mode",
            "burst",
            "--task",
            "noop",
            "--jobs",
            "2000",
            "--concurrency",
            "50",
            "--rate",
            "100",
            "--duration",
            "20",
            "--warmup",
            "2",
            "--platform",
            "http://127.0.0.1:18080",
            "--kafka-brokers",
            "127.0.0.1:9092",
        ])
        .unwrap();
        let Some(BenchPeer::Peer(args)) = cli.bench.peer else {
            panic!("no peer subcommand: {cli:?}");
        };
        assert_eq!(
            harness::RunKind::of(args.mode, args.task).label,
            "burst-noop"
        );
        assert_eq!((args.jobs, args.concurrency), (2000, 50));
        assert_eq!((args.rate, args.duration, args.warmup), (100.0, 20.0, 2.0));
        assert_eq!(args.platform.as_str(), "http://127.0.0.1:18080/");
    }

    #[test]
    fn bench_alone_is_still_the_pipeline_bench() {
        let cli =
            Cli::try_parse_from(["bench", "--clients", "4", "--kafka-brokers", "k:9092"]).unwrap();
        assert!(cli.bench.peer.is_none());
        assert_eq!(cli.bench.pipeline.clients, 4);
        assert!(Cli::try_parse_from(["bench", "--clients", "4", "peer"]).is_err());
    }
}
