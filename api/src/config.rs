//! Process configuration, from flags or environment variables; each platform's settings are
//! its own (`herald_infrastructure::platforms::registry`). With nothing set, Herald runs the
//! embedded default: SQLite in `./data`, the local event log, the sandbox platforms, a generated
//! vault key and dev-mode auth.
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use herald_domain::RulesTable;
use herald_infrastructure::media_source::MediaUrlPolicy;
use herald_infrastructure::platforms::registry;
use herald_infrastructure::platforms::settings::PlatformEnv;

/// What this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// HTTP API and workers (process managers, projections, relay).
    All,
    /// HTTP API only.
    Api,
    /// Workers only.
    Worker,
}

/// Settings shared by every command that opens the store. Platform settings are not flags:
/// each platform reads its own variables (see `after_help`).
#[derive(Debug, Clone, Args)]
#[command(after_help = registry::env_help())]
pub struct Config {
    /// Where the embedded default keeps its database, vault key and dev auth secret.
    #[arg(long, env = "HERALD_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// `postgres://...` for production; default: SQLite in the data dir.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Kafka bootstrap servers; default: the local event log over the SQLite outbox.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Prefix for Herald's Kafka topics (separates environments sharing a cluster).
    #[arg(long, env = "HERALD_KAFKA_TOPIC_PREFIX", default_value = "")]
    pub kafka_topic_prefix: String,
    /// Partitions of topics Herald creates.
    #[arg(long, env = "HERALD_KAFKA_PARTITIONS", default_value_t = 3)]
    pub kafka_partitions: i32,
    /// Base64 of a 32-byte key for the token vault; default: generated into the data dir.
    #[arg(long, env = "HERALD_VAULT_KEY", hide_env_values = true)]
    pub vault_key: Option<String>,
    /// HS256 secret to verify bearer tokens with.
    #[arg(long, env = "HERALD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// JWKS URL to verify RS256/ES256 bearer tokens with.
    #[arg(long, env = "HERALD_JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,
    /// Required `iss` claim, if set.
    #[arg(long, env = "HERALD_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim, if set.
    #[arg(long, env = "HERALD_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Run the simulated platforms in-process and connect to them instead of the real ones.
    #[arg(long, env = "HERALD_SANDBOX")]
    pub sandbox: Option<bool>,
    /// Where the in-process sandbox listens.
    #[arg(long, env = "HERALD_SANDBOX_BIND", default_value = "127.0.0.1:8081")]
    pub sandbox_bind: String,
    /// Public base URL of this server, for OAuth callbacks (default: taken from each request).
    #[arg(long, env = "HERALD_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Publishing attempts running at once in this process.
    #[arg(long, env = "HERALD_WORKER_CONCURRENCY", default_value_t = 32)]
    pub worker_concurrency: usize,
    /// Seconds a worker's claim on a job lasts without renewal.
    #[arg(long, env = "HERALD_JOB_LEASE_SECS", default_value_t = 30)]
    pub job_lease_secs: u64,
    /// Seconds between scans for tokens about to expire.
    #[arg(long, env = "HERALD_REFRESH_SCAN_SECS", default_value_t = 30)]
    pub refresh_scan_secs: u64,
    /// Name of this worker in leases (default: host and process id).
    #[arg(long, env = "HERALD_WORKER_ID")]
    pub worker_id: Option<String>,
    /// Let media URLs reach private, loopback and link-local addresses (development only:
    /// it opens Herald's network to whoever may publish).
    #[arg(long, env = "HERALD_MEDIA_ALLOW_PRIVATE", default_value_t = false)]
    pub media_allow_private: bool,
    /// Comma-separated hosts (`host` or `host:port`) media may come from whatever they resolve
    /// to, e.g. an internal CDN.
    #[arg(long, env = "HERALD_MEDIA_ALLOWED_HOSTS", default_value = "")]
    pub media_allowed_hosts: String,
    /// A JSON file adjusting the platforms' content rules, e.g.
    /// `{"x": {"max_text": 25000}, "instagram": {"video": {"max_secs": 180}}}`.
    #[arg(long, env = "HERALD_CONTENT_RULES")]
    pub content_rules: Option<PathBuf>,
    /// Each platform's settings, read by the platform itself (`X_CLIENT_ID`, ...).
    #[arg(skip = PlatformEnv::from_process())]
    pub platforms: PlatformEnv,
}

impl Config {
    /// The embedded default in `data_dir`, with every other setting at its default; the base
    /// for tests and tools that set fields explicitly instead of reading the environment.
    pub fn embedded(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            database_url: None,
            kafka_brokers: None,
            kafka_topic_prefix: String::new(),
            kafka_partitions: 3,
            vault_key: None,
            jwt_secret: None,
            jwt_jwks_url: None,
            jwt_issuer: None,
            jwt_audience: None,
            sandbox: None,
            sandbox_bind: "127.0.0.1:0".into(),
            public_url: None,
            worker_concurrency: 32,
            job_lease_secs: 30,
            refresh_scan_secs: 30,
            worker_id: None,
            media_allow_private: false,
            media_allowed_hosts: String::new(),
            content_rules: None,
            platforms: PlatformEnv::default(),
        }
    }

    /// The embedded default: no database URL given.
    pub fn is_embedded(&self) -> bool {
        self.database_url.is_none()
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("herald.db").display()))
    }

    /// The sandbox runs unless switched off, or unless a platform's app is configured.
    pub fn sandbox_enabled(&self) -> bool {
        self.sandbox
            .unwrap_or(!registry::any_app_configured(&self.platforms))
    }

    /// Dev-mode auth: a secret generated into the data dir, for the embedded default only.
    pub fn dev_auth(&self) -> bool {
        self.jwt_secret.is_none() && self.jwt_jwks_url.is_none()
    }

    /// The content rules this deployment runs with: the documented defaults, adjusted by the
    /// `content_rules` file when one is given.
    pub fn rules_table(&self) -> anyhow::Result<RulesTable> {
        let Some(path) = &self.content_rules else {
            return Ok(RulesTable::default());
        };
        let json = std::fs::read_to_string(path)
            .with_context(|| format!("reading HERALD_CONTENT_RULES {}", path.display()))?;
        RulesTable::from_json(&json)
            .with_context(|| format!("HERALD_CONTENT_RULES {}", path.display()))
    }

    /// Which media URLs may be fetched; the in-process sandbox (`sandbox_host`, `host:port`)
    /// serves sample media and is always allowed.
    pub fn media_policy(&self, sandbox_host: Option<&str>) -> MediaUrlPolicy {
        let policy = MediaUrlPolicy::new(self.media_allow_private, &self.media_allowed_hosts);
        match sandbox_host {
            Some(host) => policy.allowing(host),
            None => policy,
        }
    }

    pub fn worker_id(&self) -> String {
        self.worker_id.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "herald".into());
            format!("{host}-{}", std::process::id())
        })
    }
}
