//! The `herald` command.
use std::net::TcpListener;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use herald_api::config::{Config, Role};
use herald_api::runtime::Herald;
use herald_infrastructure::scheduler::DueJobs;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "herald",
    version,
    about = "Self-hosted social publishing backend"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API and the workers.
    Serve {
        #[command(flatten)]
        config: Config,
        /// Address to listen on.
        #[arg(long, env = "HERALD_BIND", default_value = "127.0.0.1:8080")]
        bind: String,
        #[arg(long, value_enum, env = "HERALD_ROLE", default_value = "all")]
        role: Role,
    },
    /// Mint a bearer token for a user (dev mode, or with HERALD_JWT_SECRET).
    Token {
        #[command(flatten)]
        config: Config,
        #[arg(long)]
        user: String,
        /// Validity in hours.
        #[arg(long, default_value_t = 24)]
        hours: u64,
    },
    /// Rebuild the read models from the event store (stop the workers first).
    Replay {
        #[command(flatten)]
        config: Config,
        /// Also time a plain scan of the event table afterwards and print the replay's rate as
        /// a ratio of it.
        #[arg(long)]
        measure: bool,
    },
    /// Measure the pipeline against a raw-insert baseline, or (`bench peer`) as a queue-bench
    /// peer (see the README).
    #[cfg(feature = "sandbox")]
    Bench(herald_api::bench::BenchCommand),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_log_filter(&cli.command)));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `HERALD_LOG_FORMAT=json`: one JSON object a line, with the request's span (its id) in it.
    match std::env::var("HERALD_LOG_FORMAT").as_deref() {
        Ok("json") => logs.json().with_current_span(true).init(),
        Ok("text") | Err(_) => logs.init(),
        Ok(other) => {
            logs.init();
            tracing::warn!(
                format = other,
                "HERALD_LOG_FORMAT is json or text; using text"
            );
        }
    }
    match cli.command {
        Command::Serve { config, bind, role } => serve(config, &bind, role).await,
        Command::Token {
            config,
            user,
            hours,
        } => {
            let secret = match &config.jwt_secret {
                Some(secret) => secret.as_bytes().to_vec(),
                None => herald_api::auth::dev_secret(&config.data_dir)?.0,
            };
            let token = herald_api::auth::mint(&secret, &user, Duration::from_secs(hours * 3600))?;
            println!("{token}");
            Ok(())
        }
        Command::Replay { config, measure } => {
            let herald = Herald::build(Config {
                sandbox: Some(false),
                ..config
            })
            .await?;
            let report = herald_api::replay::replay(&herald).await?;
            for (projection, applied) in &report.applied {
                println!("{projection}: {applied} events applied");
            }
            let seconds = report.elapsed.as_secs_f64();
            let rate = report.events_read as f64 / seconds;
            println!(
                "replayed {} events in {seconds:.2} s: {rate:.0} events/s",
                report.events_read
            );
            if measure {
                let (rows, scan_rate) = herald_api::replay::raw_scan_rate(&herald.db).await?;
                println!(
                    "raw scan of the event table: {rows} rows at {scan_rate:.0} rows/s; replay/scan = {:.3}",
                    rate / scan_rate
                );
            }
            Ok(())
        }
        #[cfg(feature = "sandbox")]
        Command::Bench(args) => herald_api::bench::run(args).await,
    }
}

/// Info and above, except for `bench peer`: there Herald logs a line or more per job, which
/// would cost the measured run what the harness spares its other peers (it keeps only their
/// warnings and errors). `RUST_LOG` overrides either.
fn default_log_filter(command: &Command) -> &'static str {
    match command {
        #[cfg(feature = "sandbox")]
        Command::Bench(herald_api::bench::BenchCommand { peer: Some(_), .. }) => "warn",
        _ => "info,sqlx=warn,actix_server=warn",
    }
}

async fn serve(config: Config, bind: &str, role: Role) -> anyhow::Result<()> {
    let embedded = config.is_embedded();
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let herald = Herald::build(config).await?;
    // The same owner and lease as the publisher's, to hand its jobs back if it must.
    let leases = DueJobs::new(
        herald.db.clone(),
        herald.config.worker_id(),
        Duration::from_secs(herald.config.job_lease_secs.max(1)),
    );
    let listener = TcpListener::bind(bind).with_context(|| format!("binding {bind}"))?;
    let running = herald_api::server::start(herald, listener, role).await?;
    tracing::info!(url = %running.url, embedded, "Herald is running");
    let signal = stop_signal().await?;
    tracing::info!(
        signal,
        grace_secs = grace.as_secs(),
        "shutting down: no new work is claimed, and work in flight has the grace period to finish"
    );
    if tokio::time::timeout(grace, running.stop()).await.is_err() {
        let released = leases.release_all().await?;
        tracing::warn!(
            released,
            "the grace period ended with work in flight: its jobs are handed back, and the next worker checks with each platform before sending anything again"
        );
    }
    Ok(())
}

/// Waits for SIGTERM (a container stopping) or SIGINT (Ctrl-C); names the one that came.
async fn stop_signal() -> anyhow::Result<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => interrupted.map(|()| "SIGINT").context("listening for SIGINT"),
            _ = terminate.recv() => Ok("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .context("listening for Ctrl-C")?;
        Ok("Ctrl-C")
    }
}
