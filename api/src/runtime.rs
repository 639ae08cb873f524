//! Wiring: builds Herald's parts from configuration and starts its workers.
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use herald_domain::{Connection, ConnectionId, PublishingJob, RulesTable};
use herald_infrastructure::db::Db;
use herald_infrastructure::log::{EventLog, KafkaConfig, LocalLog, LogHandler};
use herald_infrastructure::media_source::MediaSource;
use herald_infrastructure::platforms::facebook_pages::{FacebookPagesAdapter, FacebookPagesConfig};
use herald_infrastructure::platforms::instagram::{InstagramAdapter, InstagramConfig};
use herald_infrastructure::platforms::linkedin::{LinkedInAdapter, LinkedInConfig};
use herald_infrastructure::platforms::reddit::{RedditAdapter, RedditConfig};
use herald_infrastructure::platforms::threads::{ThreadsAdapter, ThreadsConfig};
use herald_infrastructure::platforms::tiktok::{TiktokAdapter, TiktokConfig};
use herald_infrastructure::platforms::x::{XAdapter, XConfig};
use herald_infrastructure::platforms::youtube::{
    InsertQuota, QuotaConfig, YouTubeAdapter, YouTubeConfig,
};
use herald_infrastructure::platforms::Adapters;
use herald_infrastructure::process::publisher::Publisher;
use herald_infrastructure::process::refresher::{self, ExpiringConnections};
use herald_infrastructure::scheduler::DueJobs;
use herald_infrastructure::secret::Secret;
use herald_infrastructure::store::Aggregates;
use herald_infrastructure::tokens::TokenService;
use herald_infrastructure::vault::{self, Sealer, Vault};
use herald_projections::connections::{ConnectionQueries, ConnectionsProjection};
use herald_projections::due_jobs::DueJobsProjection;
use herald_projections::jobs::{JobQueries, JobsProjection};
use herald_projections::ProjectionHandler;
use herald_sandbox::{Sandbox, SandboxConfig};
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
            let sandbox = Sandbox::start(&config.sandbox_bind, SandboxConfig::default())
                .await
                .with_context(|| {
                    format!("starting the sandbox platforms on {}", config.sandbox_bind)
                })?;
            tracing::info!(url = %sandbox.base_url(), "sandbox platforms running");
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
                .as_ref()
                .map(|s| s.local_addr().to_string())
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
            job_queries: JobQueries::new(db.any.clone()),
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

    /// The projections this process feeds (also what `herald replay` rebuilds).
    pub fn job_projections(&self) -> (JobsProjection, DueJobsProjection) {
        let wake = self.publisher_wake.clone();
        (
            JobsProjection,
            DueJobsProjection::new(Arc::new(move || wake.notify_one())),
        )
    }

    /// Starts the workers: projections, the scheduler, the publisher, the token refresher and
    /// (with Kafka) the outbox relay.
    pub async fn spawn_workers(&self) -> Vec<JoinHandle<()>> {
        let (jobs_projection, due_projection) = self.job_projections();
        let pool = &self.db.any;
        let handlers: Vec<Arc<dyn LogHandler>> = vec![
            Arc::new(ProjectionHandler::new(jobs_projection, pool.clone())),
            Arc::new(ProjectionHandler::new(ConnectionsProjection, pool.clone())),
            Arc::new(ProjectionHandler::new(due_projection, pool.clone())),
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
        tasks.push(tokio::spawn(refresher::run(
            self.tokens.clone(),
            ReadModelExpiry(self.connection_queries.clone()),
            Duration::from_secs(self.config.refresh_scan_secs.max(1)),
            self.shutdown.clone(),
        )));
        tasks
    }
}

fn adapters(config: &Config, sandbox: Option<&Sandbox>) -> anyhow::Result<Adapters> {
    let mut adapters = Adapters::default();
    let sandbox_host = sandbox.map(|s| s.local_addr().to_string());
    let x_config = match (sandbox, &config.x_client_id) {
        (Some(sandbox), None) => {
            let defaults = SandboxConfig::default();
            Some(XConfig::for_base(
                url::Url::parse(&sandbox.x_base_url())?,
                defaults.x.client_id,
                Some(Secret::new(defaults.x.client_secret)),
            ))
        }
        (_, Some(client_id)) => {
            let secret = config.x_client_secret.clone().map(Secret::new);
            Some(match &config.x_api_base {
                Some(base) => XConfig::for_base(
                    url::Url::parse(base).context("X_API_BASE")?,
                    client_id.clone(),
                    secret,
                ),
                None => XConfig::new(client_id.clone(), secret),
            })
        }
        (None, None) => None,
    };
    if let Some(mut x_config) = x_config {
        x_config.request_timeout = Duration::from_secs(config.x_request_timeout_secs.max(1));
        x_config.media_policy = config.media_policy(sandbox_host.as_deref());
        adapters = adapters.with(Arc::new(XAdapter::new(x_config)?));
    }
    let threads_config = match (sandbox, &config.threads_client_id) {
        (Some(sandbox), None) => {
            let defaults = SandboxConfig::default();
            Some(ThreadsConfig::for_base(
                url::Url::parse(&sandbox.threads_base_url())?,
                defaults.threads.client_id,
                Secret::new(defaults.threads.client_secret),
            ))
        }
        (_, Some(client_id)) => {
            // Threads has no public clients: every token call carries the app secret.
            let secret = Secret::new(
                config
                    .threads_client_secret
                    .clone()
                    .context("THREADS_CLIENT_SECRET is required with THREADS_CLIENT_ID")?,
            );
            Some(match &config.threads_api_base {
                Some(base) => ThreadsConfig::for_base(
                    url::Url::parse(base).context("THREADS_API_BASE")?,
                    client_id.clone(),
                    secret,
                ),
                None => ThreadsConfig::new(client_id.clone(), secret),
            })
        }
        (None, None) => None,
    };
    if let Some(mut threads_config) = threads_config {
        threads_config.request_timeout =
            Duration::from_secs(config.threads_request_timeout_secs.max(1));
        if let Some(quota) = config.threads_publish_quota {
            threads_config.publish_quota_cap = Some(quota);
            threads_config.publish_quota_fallback = quota;
        }
        if let Some(quota) = config.threads_reply_quota {
            threads_config.reply_quota_cap = Some(quota);
            threads_config.reply_quota_fallback = quota;
        }
        adapters = adapters.with(Arc::new(ThreadsAdapter::new(threads_config)?));
    }
    if let Some(youtube) = youtube_adapter(config, sandbox)? {
        adapters = adapters.with(Arc::new(youtube));
    }
    if let Some(linkedin) = linkedin_adapter(config, sandbox)? {
        adapters = adapters.with(linkedin);
    }
    if let Some(mut tiktok_config) = tiktok_config(config, sandbox)? {
        tiktok_config.media_policy = config.media_policy(sandbox_host.as_deref());
        adapters = adapters.with(Arc::new(TiktokAdapter::new(tiktok_config)?));
    }
    if let Some(reddit) = reddit_adapter(config, sandbox)? {
        adapters = adapters.with(reddit);
    }
    adapters = meta_adapters(config, sandbox, adapters)?;
    Ok(adapters)
}

/// Facebook Pages and Instagram: each its own Meta app settings (they may name the same app),
/// the sandbox's `/meta` twin by default.
fn meta_adapters(
    config: &Config,
    sandbox: Option<&Sandbox>,
    mut adapters: Adapters,
) -> anyhow::Result<Adapters> {
    // (client id, app secret, base URL) of each, or None when the platform is off.
    let settings =
        |id: &Option<String>, secret: &Option<String>, base: &Option<String>, prefix: &str| {
            match (sandbox, id) {
                (Some(sandbox), None) => {
                    let defaults = SandboxConfig::default().meta;
                    anyhow::Ok(Some((
                        defaults.client_id,
                        Secret::new(defaults.client_secret),
                        Some(url::Url::parse(&sandbox.meta_base_url())?),
                    )))
                }
                (_, Some(id)) => {
                    // Facebook Login's server flow sends the app secret with every token call.
                    let secret = secret.clone().with_context(|| {
                        format!("{prefix}_CLIENT_SECRET is required with {prefix}_CLIENT_ID")
                    })?;
                    let base = base
                        .as_deref()
                        .map(url::Url::parse)
                        .transpose()
                        .with_context(|| format!("{prefix}_API_BASE"))?;
                    Ok(Some((id.clone(), Secret::new(secret), base)))
                }
                (None, None) => Ok(None),
            }
        };
    if let Some((id, secret, base)) = settings(
        &config.facebook_pages_client_id,
        &config.facebook_pages_client_secret,
        &config.facebook_pages_api_base,
        "FACEBOOK_PAGES",
    )? {
        let mut fb = match base {
            Some(base) => FacebookPagesConfig::for_base(base, id, secret),
            None => FacebookPagesConfig::new(id, secret),
        };
        fb.graph.request_timeout =
            Duration::from_secs(config.facebook_pages_request_timeout_secs.max(1));
        fb.reels_per_day = config.facebook_reels_per_day;
        let sandbox_host = sandbox.map(|s| s.local_addr().to_string());
        fb.media_policy = config.media_policy(sandbox_host.as_deref());
        adapters = adapters.with(Arc::new(FacebookPagesAdapter::new(fb)?));
    }
    if let Some((id, secret, base)) = settings(
        &config.instagram_client_id,
        &config.instagram_client_secret,
        &config.instagram_api_base,
        "INSTAGRAM",
    )? {
        let mut ig = match base {
            Some(base) => InstagramConfig::for_base(base, id, secret),
            None => InstagramConfig::new(id, secret),
        };
        ig.graph.request_timeout =
            Duration::from_secs(config.instagram_request_timeout_secs.max(1));
        if let Some(quota) = config.instagram_publish_quota {
            ig.publish_quota_cap = Some(quota);
            ig.publish_quota_fallback = quota;
        }
        ig.video_upload = config.instagram_video_upload;
        if let Some(bytes) = config.instagram_upload_chunk_bytes {
            ig.upload_chunk_bytes = bytes.max(1);
        }
        ig.media_policy =
            config.media_policy(sandbox.map(|s| s.local_addr().to_string()).as_deref());
        adapters = adapters.with(Arc::new(InstagramAdapter::new(ig)?));
    }
    Ok(adapters)
}

/// The YouTube adapter: the sandbox's twin, or Google with the configured client.
fn youtube_adapter(
    config: &Config,
    sandbox: Option<&Sandbox>,
) -> anyhow::Result<Option<YouTubeAdapter>> {
    let mut youtube = match (sandbox, &config.youtube_client_id) {
        (Some(sandbox), None) => {
            let defaults = SandboxConfig::default().youtube;
            YouTubeConfig::for_base(
                url::Url::parse(&sandbox.youtube_base_url())?,
                defaults.client_id,
                Secret::new(defaults.client_secret),
            )
        }
        (_, Some(client_id)) => {
            // A web client: Google's token endpoint wants the secret with every call.
            let secret = Secret::new(
                config
                    .youtube_client_secret
                    .clone()
                    .context("YOUTUBE_CLIENT_SECRET is required with YOUTUBE_CLIENT_ID")?,
            );
            match &config.youtube_api_base {
                Some(base) => YouTubeConfig::for_base(
                    url::Url::parse(base).context("YOUTUBE_API_BASE")?,
                    client_id.clone(),
                    secret,
                ),
                None => YouTubeConfig::new(client_id.clone(), secret),
            }
        }
        (None, None) => return Ok(None),
    };
    youtube.media_policy =
        config.media_policy(sandbox.map(|s| s.local_addr().to_string()).as_deref());
    youtube.request_timeout = Duration::from_secs(config.youtube_request_timeout_secs.max(1));
    youtube.chunk_timeout = youtube.chunk_timeout.max(youtube.request_timeout);
    if let Some(bytes) = config.youtube_chunk_bytes {
        youtube.chunk_bytes = bytes;
    }
    youtube.quota = QuotaConfig {
        daily_units: config.youtube_daily_quota_units,
        insert: match config.youtube_inserts_per_day {
            Some(per_day) => InsertQuota::Bucket(per_day),
            None => InsertQuota::Units(config.youtube_insert_quota_cost),
        },
    };
    Ok(Some(YouTubeAdapter::new(youtube)?))
}

/// The LinkedIn adapter: the sandbox twin unless LINKEDIN_CLIENT_ID is set.
fn linkedin_adapter(
    config: &Config,
    sandbox: Option<&Sandbox>,
) -> anyhow::Result<Option<Arc<LinkedInAdapter>>> {
    let mut linkedin = match (sandbox, &config.linkedin_client_id) {
        (Some(sandbox), None) => {
            let defaults = SandboxConfig::default();
            LinkedInConfig::for_base(
                url::Url::parse(&sandbox.linkedin_base_url())?,
                defaults.linkedin.client_id,
                Secret::new(defaults.linkedin.client_secret),
            )
        }
        (_, Some(client_id)) => {
            // LinkedIn's token endpoint always wants the client secret in the body.
            let secret = Secret::new(
                config
                    .linkedin_client_secret
                    .clone()
                    .context("LINKEDIN_CLIENT_SECRET is required with LINKEDIN_CLIENT_ID")?,
            );
            match &config.linkedin_api_base {
                Some(base) => LinkedInConfig::for_base(
                    url::Url::parse(base).context("LINKEDIN_API_BASE")?,
                    client_id.clone(),
                    secret,
                ),
                None => LinkedInConfig::new(client_id.clone(), secret),
            }
        }
        (None, None) => return Ok(None),
    };
    if let Some(version) = &config.linkedin_version {
        linkedin.version = version.clone();
    }
    if let Some(scopes) = &config.linkedin_scopes {
        linkedin.scopes = scopes.split_whitespace().map(str::to_owned).collect();
    }
    linkedin.request_timeout = Duration::from_secs(config.linkedin_request_timeout_secs.max(1));
    linkedin.throttle_backoff = Duration::from_secs(config.linkedin_throttle_backoff_secs);
    linkedin.media_policy =
        config.media_policy(sandbox.map(|s| s.local_addr().to_string()).as_deref());
    Ok(Some(Arc::new(LinkedInAdapter::new(linkedin)?)))
}

/// The Reddit adapter: the sandbox twin unless REDDIT_CLIENT_ID is set.
fn reddit_adapter(
    config: &Config,
    sandbox: Option<&Sandbox>,
) -> anyhow::Result<Option<Arc<RedditAdapter>>> {
    let mut reddit = match (sandbox, &config.reddit_client_id) {
        (Some(sandbox), None) => {
            let defaults = SandboxConfig::default();
            RedditConfig::for_base(
                url::Url::parse(&sandbox.reddit_base_url())?,
                defaults.reddit.client_id,
                Secret::new(defaults.reddit.client_secret),
            )
        }
        (_, Some(client_id)) => {
            // Installed apps have no secret: Basic auth then carries an empty password.
            let secret = Secret::new(config.reddit_client_secret.clone().unwrap_or_default());
            match &config.reddit_api_base {
                Some(base) => RedditConfig::for_base(
                    url::Url::parse(base).context("REDDIT_API_BASE")?,
                    client_id.clone(),
                    secret,
                ),
                None => RedditConfig::new(client_id.clone(), secret),
            }
        }
        (None, None) => return Ok(None),
    };
    if let Some(agent) = &config.reddit_user_agent {
        reddit.user_agent = agent.clone();
    }
    reddit.request_timeout = Duration::from_secs(config.reddit_request_timeout_secs.max(1));
    reddit.media_policy =
        config.media_policy(sandbox.map(|s| s.local_addr().to_string()).as_deref());
    Ok(Some(Arc::new(RedditAdapter::new(reddit)?)))
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

/// The TikTok adapter's settings: the sandbox twin by default when the sandbox runs, TikTok
/// itself with `TIKTOK_CLIENT_ID` and `TIKTOK_CLIENT_SECRET`.
fn tiktok_config(
    config: &Config,
    sandbox: Option<&Sandbox>,
) -> anyhow::Result<Option<TiktokConfig>> {
    let mut tiktok = match (sandbox, &config.tiktok_client_id) {
        (Some(sandbox), None) => {
            let defaults = SandboxConfig::default();
            TiktokConfig::for_base(
                url::Url::parse(&sandbox.tiktok_base_url())?,
                defaults.tiktok.client_key,
                Secret::new(defaults.tiktok.client_secret),
            )
        }
        (_, Some(client_key)) => {
            // Every TikTok token call carries the client secret.
            let secret = Secret::new(
                config
                    .tiktok_client_secret
                    .clone()
                    .context("TIKTOK_CLIENT_SECRET is required with TIKTOK_CLIENT_ID")?,
            );
            match &config.tiktok_api_base {
                Some(base) => TiktokConfig::for_base(
                    url::Url::parse(base).context("TIKTOK_API_BASE")?,
                    client_key.clone(),
                    secret,
                ),
                None => TiktokConfig::new(client_key.clone(), secret),
            }
        }
        (None, None) => return Ok(None),
    };
    tiktok.request_timeout = Duration::from_secs(config.tiktok_request_timeout_secs.max(1));
    tiktok.chunk_bytes = config.tiktok_chunk_bytes;
    tiktok.pull_from_url_prefixes = config
        .tiktok_pull_from_url_prefixes
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(scopes) = &config.tiktok_scopes {
        // TikTok separates scopes with commas; spaces are forgiven.
        tiktok.scopes = scopes
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
    }
    Ok(Some(tiktok))
}
