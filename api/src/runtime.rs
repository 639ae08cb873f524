//! Wiring: builds Herald's parts from configuration and starts its workers.
use std::sync::Arc;
use std::time::Duration;

use crate::sandbox::{self, Sandbox};
use anyhow::Context;
use herald_domain::{Connection, ConnectionId, PublishingJob, RulesTable};
use herald_infrastructure::db::Db;
use herald_infrastructure::log::{EventLog, KafkaConfig, LocalLog, LogHandler};
use herald_infrastructure::media_source::{MediaSource, MediaUrlPolicy};
use herald_infrastructure::platforms::registry;
use herald_infrastructure::platforms::settings::{Services, Twins};
use herald_infrastructure::platforms::Adapters;
use herald_infrastructure::process::publisher::Publisher;
use herald_infrastructure::process::refresher::{self, ExpiringConnections};
use herald_infrastructure::scheduler::DueJobs;
use herald_infrastructure::store::Aggregates;
use herald_infrastructure::tokens::TokenService;
use herald_infrastructure::vault::{self, Sealer, Vault};
use herald_infrastructure::webhooks::{DeliveryWorker, WebhookFanout, WebhookSubscriptions};
use herald_projections::analytics::{AnalyticsProjection, AnalyticsQueries};
use herald_projections::connections::{ConnectionQueries, ConnectionsProjection};
use herald_projections::due_jobs::DueJobsProjection;
use herald_projections::jobs::{JobQueries, JobsProjection};
use herald_projections::ProjectionHandler;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::{self, Authenticator};
use crate::config::Config;

/// Everything a running Herald shares between its API and its workers.
#[derive(Clone)]
pub struct Herald {
    pub config: Config,
    pub db: Db,
    pub jobs: Aggregates<PublishingJob>,
    pub connections: Aggregates<Connection>,
    pub vault: Vault,
    pub adapters: Adapters,
    pub tokens: TokenService,
    pub log: EventLog,
    pub job_queries: JobQueries,
    pub analytics_queries: AnalyticsQueries,
    pub connection_queries: ConnectionQueries,
    pub auth: Authenticator,
    pub sandbox: Option<Arc<Sandbox>>,
    /// Reads media headers when a job is accepted, under the deployment's media URL policy.
    pub media: MediaSource,
    /// The content rules jobs are accepted under.
    pub rules: RulesTable,
    /// Where OAuth callbacks may send the browser back to (`HERALD_OAUTH_RETURN_URLS`).
    pub oauth_return_urls: Vec<url::Url>,
    /// Each user's request budgets in this process.
    pub api_limits: crate::rate_limit::ApiRateLimits,
    pub publisher_wake: Arc<Notify>,
    /// Users' webhook subscriptions, their deliveries and attempts.
    pub webhooks: WebhookSubscriptions,
    /// Which URLs webhooks may be sent to (`HERALD_WEBHOOK_ALLOW_PRIVATE`, `_ALLOWED_HOSTS`).
    pub webhook_policy: MediaUrlPolicy,
    /// Wakes this process's webhook delivery worker when deliveries are recorded.
    pub webhook_wake: Arc<Notify>,
    pub shutdown: CancellationToken,
}

impl Herald {
    /// Opens the store (applying migrations), the vault and the log, and configures adapters.
    pub async fn build(config: Config) -> anyhow::Result<Herald> {
        config.check_production_secrets()?;
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating the data dir {}", config.data_dir.display()))?;
        let db = Db::connect(&config.database_url(), 16).await?;
        let log = match &config.kafka_brokers {
            Some(brokers) => {
                if !db.is_postgres() {
                    anyhow::bail!("KAFKA_BROKERS needs DATABASE_URL to be Postgres (the outbox relay reads it)");
                }
                let mut kafka = KafkaConfig::new(brokers.clone());
                kafka.topic_prefix = config.kafka_topic_prefix.clone();
                kafka.partitions = config.kafka_partitions;
                // Topics are created by the workers that use them (consumers and the relay), so an
                // API-only process does not need Kafka to start.
                EventLog::Kafka(kafka)
            }
            None => {
                if db.is_postgres() {
                    anyhow::bail!("with Postgres, set KAFKA_BROKERS: the local event log runs over SQLite only");
                }
                EventLog::Local(LocalLog::new(db.clone()))
            }
        };
        let on_commit: Arc<dyn Fn() + Send + Sync> = {
            let log = log.clone();
            Arc::new(move || log.notify_committed())
        };
        let jobs = Aggregates::<PublishingJob>::new(&db, on_commit.clone());
        let connections = Aggregates::<Connection>::new(&db, on_commit);
        let key = match &config.vault_key {
            Some(encoded) => vault::parse_key(encoded)?,
            None => {
                let path = config.data_dir.join("vault.key");
                let (key, generated) = vault::load_or_generate_key(&path)?;
                if generated {
                    tracing::warn!(path = %path.display(), "generated a new vault key (mode 0600); back it up, or set HERALD_VAULT_KEY");
                }
                key
            }
        };
        let vault = Vault::new(db.clone(), Sealer::new(&key));
        let sandbox = if config.sandbox_enabled() {
            let sandbox = sandbox::start(&config.sandbox_bind)
                .await
                .with_context(|| {
                    format!("starting the sandbox platforms on {}", config.sandbox_bind)
                })?;
            tracing::info!(address = %sandbox::local_addr(&sandbox), "sandbox platforms running");
            Some(Arc::new(sandbox))
        } else {
            None
        };
        let adapters = adapters(&config, sandbox.as_deref())?;
        let tokens = TokenService::new(
            vault.clone(),
            connections.clone(),
            adapters.clone(),
            db.clone(),
            config.worker_id(),
        );
        let auth = if let Some(secret) = &config.jwt_secret {
            Authenticator::hs256(secret.as_bytes().to_vec())
        } else if let Some(url) = &config.jwt_jwks_url {
            Authenticator::jwks(url.clone())
        } else {
            let (secret, _) = auth::dev_secret(&config.data_dir)?;
            tracing::warn!("dev-mode auth: mint tokens with `herald token --user <id>`");
            Authenticator::hs256(secret)
        }
        .requiring(config.jwt_issuer.clone(), config.jwt_audience.clone());
        let media_policy = config.media_policy(
            sandbox
                .as_deref()
                .map(|s| sandbox::local_addr(s).to_string())
                .as_deref(),
        );
        let media = MediaSource::new(media_policy, Duration::from_secs(10))?;
        Ok(Herald {
            media,
            rules: config.rules_table()?,
            // Checked at start-up, so a mistyped return URL stops Herald instead of a connect.
            oauth_return_urls: config.oauth_return_urls()?,
            api_limits: crate::rate_limit::ApiRateLimits::new(
                config.api_queries_per_minute,
                config.api_commands_per_minute,
            ),
            webhooks: WebhookSubscriptions::new(db.clone(), vault.sealer().clone()),
            webhook_policy: config.webhook_policy(),
            webhook_wake: Arc::new(Notify::new()),
            job_queries: JobQueries::new(db.any.clone()),
            analytics_queries: AnalyticsQueries::new(db.any.clone()),
            connection_queries: ConnectionQueries::new(db.any.clone()),
            config,
            db,
            jobs,
            connections,
            vault,
            adapters,
            tokens,
            log,
            auth,
            sandbox,
            publisher_wake: Arc::new(Notify::new()),
            shutdown: CancellationToken::new(),
        })
    }

    /// The projections of job events this process feeds (also what `herald replay` rebuilds).
    pub fn job_projections(&self) -> (JobsProjection, DueJobsProjection, AnalyticsProjection) {
        let wake = self.publisher_wake.clone();
        (
            JobsProjection,
            DueJobsProjection::new(Arc::new(move || wake.notify_one())),
            AnalyticsProjection,
        )
    }

    /// Starts the workers: projections, the scheduler, the publisher, the token refresher, the
    /// webhook fan-out and delivery worker, and (with Kafka) the outbox relay.
    pub async fn spawn_workers(&self) -> Vec<JoinHandle<()>> {
        let (jobs_projection, due_projection, analytics_projection) = self.job_projections();
        let pool = &self.db.any;
        let handlers: Vec<Arc<dyn LogHandler>> = vec![
            Arc::new(ProjectionHandler::new(jobs_projection, pool.clone())),
            Arc::new(ProjectionHandler::new(ConnectionsProjection, pool.clone())),
            Arc::new(ProjectionHandler::new(due_projection, pool.clone())),
            Arc::new(ProjectionHandler::new(analytics_projection, pool.clone())),
            Arc::new(WebhookFanout::new(
                self.db.clone(),
                self.webhooks.clone(),
                self.jobs.clone(),
                self.connections.clone(),
                self.webhook_wake.clone(),
            )),
        ];
        let mut tasks = Vec::new();
        for handler in handlers {
            tasks.push(
                self.log
                    .spawn_consumer(handler, self.db.clone(), self.shutdown.clone())
                    .await,
            );
        }
        if let Some(relay) = self
            .log
            .spawn_relay(self.db.clone(), self.shutdown.clone())
            .await
        {
            tasks.push(relay);
        }
        let due = DueJobs::new(
            self.db.clone(),
            self.config.worker_id(),
            Duration::from_secs(self.config.job_lease_secs.max(1)),
        );
        let publisher = Publisher::new(
            self.jobs.clone(),
            self.connections.clone(),
            self.adapters.clone(),
            self.tokens.clone(),
            due,
            self.db.clone(),
            self.config.worker_concurrency,
        );
        tasks.push(tokio::spawn(
            publisher.run(self.publisher_wake.clone(), self.shutdown.clone()),
        ));
        match DeliveryWorker::new(
            self.db.clone(),
            self.webhooks.clone(),
            self.webhook_policy.clone(),
            self.config.webhook_delivery(),
            self.webhook_wake.clone(),
        ) {
            Ok(worker) => tasks.push(tokio::spawn(worker.run(self.shutdown.clone()))),
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "no webhook delivery worker started")
            }
        }
        tasks.push(tokio::spawn(refresher::run(
            self.tokens.clone(),
            ReadModelExpiry(self.connection_queries.clone()),
            Duration::from_secs(self.config.refresh_scan_secs.max(1)),
            self.shutdown.clone(),
        )));
        tasks
    }
}

/// Every platform's adapter, built through the platform registry: its own settings, or its
/// sandbox twin when the sandbox runs and no app of its own is configured.
fn adapters(config: &Config, sandbox: Option<&Sandbox>) -> anyhow::Result<Adapters> {
    let twins = |path: &str| sandbox.and_then(|s| sandbox::twin(s, path));
    let services = Services {
        sandbox: sandbox.map(|_| &twins as Twins<'_>),
        media_policy: config.media_policy(
            sandbox
                .map(|s| sandbox::local_addr(s).to_string())
                .as_deref(),
        ),
    };
    registry::build_adapters(&config.platforms, &services)
}

/// The refresher's work list, from the connections read model.
struct ReadModelExpiry(ConnectionQueries);

#[async_trait::async_trait]
impl ExpiringConnections for ReadModelExpiry {
    async fn expiring(
        &self,
        before: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<Vec<ConnectionId>> {
        Ok(self
            .0
            .expiring(before, 100)
            .await?
            .into_iter()
            .filter_map(|view| ConnectionId::parse(&view.connection_id).ok())
            .collect())
    }

    async fn logins_ended(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<Vec<ConnectionId>> {
        Ok(self
            .0
            .logins_ended(now, 100)
            .await?
            .into_iter()
            .filter_map(|view| ConnectionId::parse(&view.connection_id).ok())
            .collect())
    }
}
