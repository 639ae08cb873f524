//! The `herald` command.
use std::net::TcpListener;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use herald_api::config::{Config, Role};
use herald_api::runtime::Herald;
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
    },
    /// Measure the pipeline against a raw-insert baseline (see the README).
    Bench(herald_api::bench::BenchArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,actix_server=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
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
        Command::Replay { config } => {
            let herald = Herald::build(Config {
                sandbox: Some(false),
                ..config
            })
            .await?;
            let counts = herald_api::replay::replay(&herald).await?;
            for (projection, applied) in counts {
                println!("{projection}: {applied} events applied");
            }
            Ok(())
        }
        Command::Bench(args) => herald_api::bench::run(args).await,
    }
}

async fn serve(config: Config, bind: &str, role: Role) -> anyhow::Result<()> {
    let embedded = config.is_embedded();
    let herald = Herald::build(config).await?;
    let listener = TcpListener::bind(bind).with_context(|| format!("binding {bind}"))?;
    let running = herald_api::server::start(herald, listener, role).await?;
    tracing::info!(url = %running.url, embedded, "Herald is running");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}
