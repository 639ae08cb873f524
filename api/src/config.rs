//! Process configuration, from flags or environment variables; each platform's settings are
//! its own (`herald_infrastructure::platforms::registry`). With nothing set, Herald runs the
//! embedded default: SQLite in `./data`, the local event log, the sandbox platforms, a generated
//! vault key and dev-mode auth.
use std::path::PathBuf;

use anyhow::Context;
use clap::builder::BoolishValueParser;
use clap::{Args, ValueEnum};
use herald_domain::retry::RetryPolicy;
use herald_domain::webhook::DeliverySchedule;
use herald_domain::RulesTable;
use herald_infrastructure::media_source::MediaUrlPolicy;
use herald_infrastructure::platforms::registry;
use herald_infrastructure::platforms::settings::PlatformEnv;
use herald_infrastructure::webhooks::DeliverySettings;

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
    #[arg(long, env = "HERALD_SANDBOX", value_parser = BoolishValueParser::new())]
    pub sandbox: Option<bool>,
    /// Where the in-process sandbox listens.
    #[arg(long, env = "HERALD_SANDBOX_BIND", default_value = "127.0.0.1:8081")]
    pub sandbox_bind: String,
    /// Public base URL of this server, for OAuth callbacks (default: taken from each request).
    #[arg(long, env = "HERALD_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Comma-separated return URLs of your client application: after a platform authorizes
    /// Herald, the callback redirects the browser to one of them (the one `POST /connect` names,
    /// else the first) with a one-time `connect_code`, which your app, as its signed-in user,
    /// completes with `POST /{platform}/connect/complete`. None: the callback shows the code.
    #[arg(long, env = "HERALD_OAUTH_RETURN_URLS", default_value = "")]
    pub oauth_return_urls: String,
    /// Reads (GET) one user may make a minute, per API process; 0: unlimited.
    #[arg(long, env = "HERALD_API_QUERIES_PER_MINUTE", default_value_t = 1200)]
    pub api_queries_per_minute: u32,
    /// Commands (publish, schedule, connect, retry, cancel, ...) one user may send a minute,
    /// per API process; 0: unlimited.
    #[arg(long, env = "HERALD_API_COMMANDS_PER_MINUTE", default_value_t = 300)]
    pub api_commands_per_minute: u32,
    /// Jobs one user may have waiting or in flight at once; 0: unlimited.
    #[arg(
        long,
        env = "HERALD_MAX_PENDING_JOBS_PER_USER",
        default_value_t = 10_000
    )]
    pub max_pending_jobs_per_user: u32,
    /// Connected accounts one user may have; 0: unlimited.
    #[arg(long, env = "HERALD_MAX_CONNECTIONS_PER_USER", default_value_t = 200)]
    pub max_connections_per_user: u32,
    /// Publishing attempts running at once in this process.
    #[arg(long, env = "HERALD_WORKER_CONCURRENCY", default_value_t = 32)]
    pub worker_concurrency: usize,
    /// Seconds a worker's claim on a job lasts without renewal.
    #[arg(long, env = "HERALD_JOB_LEASE_SECS", default_value_t = 30)]
    pub job_lease_secs: u64,
    /// Seconds `herald serve` gives in-flight work after SIGTERM or SIGINT; then it hands its
    /// leases back and exits.
    #[arg(long, env = "HERALD_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
    /// Seconds between scans for tokens about to expire.
    #[arg(long, env = "HERALD_REFRESH_SCAN_SECS", default_value_t = 30)]
    pub refresh_scan_secs: u64,
    /// Name of this worker in leases (default: host and process id).
    #[arg(long, env = "HERALD_WORKER_ID")]
    pub worker_id: Option<String>,
    /// Let media URLs reach private, loopback and link-local addresses (development only:
    /// it opens Herald's network to whoever may publish).
    #[arg(
        long,
        env = "HERALD_MEDIA_ALLOW_PRIVATE",
        default_value_t = false,
        value_parser = BoolishValueParser::new()
    )]
    pub media_allow_private: bool,
    /// Comma-separated hosts (`host` or `host:port`) media may come from whatever they resolve
    /// to, e.g. an internal CDN.
    #[arg(long, env = "HERALD_MEDIA_ALLOWED_HOSTS", default_value = "")]
    pub media_allowed_hosts: String,
    /// Webhook subscriptions one user may have; 0: unlimited.
    #[arg(
        long,
        env = "HERALD_MAX_WEBHOOK_SUBSCRIPTIONS_PER_USER",
        default_value_t = 25
    )]
    pub max_webhook_subscriptions_per_user: u32,
    /// Let webhook target URLs reach private, loopback and link-local addresses (development
    /// only: it lets any user make Herald post to its own network).
    #[arg(
        long,
        env = "HERALD_WEBHOOK_ALLOW_PRIVATE",
        default_value_t = false,
        value_parser = BoolishValueParser::new()
    )]
    pub webhook_allow_private: bool,
    /// Comma-separated hosts (`host` or `host:port`) webhooks may be sent to whatever they
    /// resolve to.
    #[arg(long, env = "HERALD_WEBHOOK_ALLOWED_HOSTS", default_value = "")]
    pub webhook_allowed_hosts: String,
    /// Seconds one webhook request may take, from connecting to the end of the answer.
    #[arg(long, env = "HERALD_WEBHOOK_TIMEOUT_SECS", default_value_t = 10)]
    pub webhook_timeout_secs: u64,
    /// Seconds before the first retry of a failed webhook delivery; doubled for each further
    /// one (with jitter), up to `HERALD_WEBHOOK_RETRY_MAX_SECS`.
    #[arg(long, env = "HERALD_WEBHOOK_RETRY_FIRST_SECS", default_value_t = 10)]
    pub webhook_retry_first_secs: u64,
    /// Longest wait between two tries of a webhook delivery.
    #[arg(long, env = "HERALD_WEBHOOK_RETRY_MAX_SECS", default_value_t = 7200)]
    pub webhook_retry_max_secs: u64,
    /// Seconds a webhook delivery is retried from its first attempt before it is given up and
    /// its subscription disabled.
    #[arg(
        long,
        env = "HERALD_WEBHOOK_RETRY_WINDOW_SECS",
        default_value_t = 86_400
    )]
    pub webhook_retry_window_secs: u64,
    /// Days delivered and given-up webhook deliveries are kept for their owners to see.
    #[arg(long, env = "HERALD_WEBHOOK_RETENTION_DAYS", default_value_t = 30)]
    pub webhook_retention_days: u32,
    /// Comma-separated subjects (`sub` claims) of operators: they may read the analytics of
    /// every user (`?user_id=` narrows to one); everyone else sees only their own.
    #[arg(long, env = "HERALD_OPERATOR_SUBJECTS", default_value = "")]
    pub operator_subjects: String,
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
            oauth_return_urls: String::new(),
            api_queries_per_minute: 1200,
            api_commands_per_minute: 300,
            max_pending_jobs_per_user: 10_000,
            max_connections_per_user: 200,
            worker_concurrency: 32,
            job_lease_secs: 30,
            shutdown_grace_secs: 30,
            refresh_scan_secs: 30,
            worker_id: None,
            media_allow_private: false,
            media_allowed_hosts: String::new(),
            content_rules: None,
            max_webhook_subscriptions_per_user: 25,
            webhook_allow_private: false,
            webhook_allowed_hosts: String::new(),
            webhook_timeout_secs: 10,
            webhook_retry_first_secs: 10,
            webhook_retry_max_secs: 7200,
            webhook_retry_window_secs: 86_400,
            webhook_retention_days: 30,
            operator_subjects: String::new(),
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

    /// Production mode (a `DATABASE_URL`) runs only with the secrets that replicas must share
    /// and that must never be made up on the spot: a generated vault key differs per process
    /// (one replica could not read another's tokens), and a generated JWT secret would make
    /// Herald trust tokens nobody configured. The error names the missing setting.
    pub fn check_production_secrets(&self) -> anyhow::Result<()> {
        if let Some(secret) = &self.jwt_secret {
            anyhow::ensure!(
                secret.len() >= crate::auth::MIN_HS256_SECRET_BYTES,
                "HERALD_JWT_SECRET must be at least {} bytes (e.g. `openssl rand -base64 32`)",
                crate::auth::MIN_HS256_SECRET_BYTES
            );
        }
        if self.jwt_jwks_url.is_some() && self.jwt_audience.is_none() {
            anyhow::bail!(
                "HERALD_JWT_JWKS_URL needs HERALD_JWT_AUDIENCE: without it, a token the identity provider issued for any other application would be accepted"
            );
        }
        if self.is_embedded() {
            return Ok(());
        }
        if self.dev_auth() {
            anyhow::bail!(
                "DATABASE_URL is set (production mode) but no token verification is: set HERALD_JWT_SECRET (at least 32 bytes) or HERALD_JWT_JWKS_URL with HERALD_JWT_AUDIENCE"
            );
        }
        if self.vault_key.is_none() {
            anyhow::bail!(
                "DATABASE_URL is set (production mode) but HERALD_VAULT_KEY is not: set it to the base64 of 32 random bytes (`openssl rand -base64 32`), the same for every Herald process"
            );
        }
        Ok(())
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

    /// Whether `subject` is one of the configured operators.
    pub fn is_operator(&self, subject: &str) -> bool {
        self.operator_subjects
            .split(',')
            .map(str::trim)
            .any(|operator| !operator.is_empty() && operator == subject)
    }

    /// Which URLs webhooks may be sent to: the media URL rules, with settings of their own.
    pub fn webhook_policy(&self) -> MediaUrlPolicy {
        MediaUrlPolicy::new(self.webhook_allow_private, &self.webhook_allowed_hosts)
    }

    /// How the webhook delivery worker sends and retries.
    pub fn webhook_delivery(&self) -> DeliverySettings {
        let seconds =
            |secs: u64| chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX));
        DeliverySettings {
            schedule: DeliverySchedule {
                backoff: RetryPolicy {
                    base: seconds(self.webhook_retry_first_secs.max(1)),
                    max: seconds(self.webhook_retry_max_secs.max(1)),
                },
                give_up_after: seconds(self.webhook_retry_window_secs),
            },
            timeout: std::time::Duration::from_secs(self.webhook_timeout_secs.max(1)),
            retention: chrono::Duration::days(i64::from(self.webhook_retention_days)),
            ..DeliverySettings::default()
        }
    }

    /// The client application's OAuth return URLs (`HERALD_OAUTH_RETURN_URLS`): absolute
    /// http(s) URLs without a fragment, so the code can be appended as a query parameter.
    pub fn oauth_return_urls(&self) -> anyhow::Result<Vec<url::Url>> {
        self.oauth_return_urls
            .split(',')
            .map(str::trim)
            .filter(|raw| !raw.is_empty())
            .map(|raw| {
                let url = url::Url::parse(raw)
                    .with_context(|| format!("HERALD_OAUTH_RETURN_URLS: {raw:?} is not a URL"))?;
                anyhow::ensure!(
                    matches!(url.scheme(), "http" | "https") && url.fragment().is_none(),
                    "HERALD_OAUTH_RETURN_URLS: {raw:?} must be an http(s) URL without a #fragment"
                );
                Ok(url)
            })
            .collect()
    }

    pub fn worker_id(&self) -> String {
        self.worker_id.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "herald".into());
            format!("{host}-{}", std::process::id())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Settings {
        #[command(flatten)]
        config: Config,
    }

    /// Boolean settings take what operators write: 1/0, true/false, yes/no, on/off.
    #[test]
    fn boolean_settings_accept_the_usual_spellings() {
        for (raw, expected) in [
            ("1", true),
            ("yes", true),
            ("on", true),
            ("0", false),
            ("no", false),
            ("false", false),
        ] {
            let parsed = Settings::try_parse_from(["herald", "--sandbox", raw]).unwrap();
            assert_eq!(parsed.config.sandbox, Some(expected), "{raw}");
        }
        assert!(Settings::try_parse_from(["herald", "--sandbox", "maybe"]).is_err());
        // Read from the environment, as a container sets it.
        std::env::set_var("HERALD_MEDIA_ALLOW_PRIVATE", "1");
        let parsed = Settings::try_parse_from(["herald"]);
        std::env::remove_var("HERALD_MEDIA_ALLOW_PRIVATE");
        assert!(parsed.unwrap().config.media_allow_private);
    }

    fn production() -> Config {
        let mut config = Config::embedded(std::env::temp_dir().join("herald-never-created"));
        // Never reached: the check comes before any connection.
        config.database_url = Some("postgres://herald@127.0.0.1:1/herald".into());
        config.jwt_secret = Some("a-production-secret-of-32-bytes!".into());
        config.vault_key = Some(herald_infrastructure::vault::generate_key());
        config
    }

    async fn refusal(config: Config) -> String {
        match crate::runtime::Herald::build(config).await {
            Ok(_) => panic!("Herald started"),
            Err(error) => format!("{error:#}"),
        }
    }

    #[tokio::test]
    async fn production_mode_without_its_secrets_refuses_to_start_naming_the_setting() {
        let mut no_vault_key = production();
        no_vault_key.vault_key = None;
        assert!(refusal(no_vault_key).await.contains("HERALD_VAULT_KEY"));

        let mut no_auth = production();
        no_auth.jwt_secret = None;
        let why = refusal(no_auth).await;
        assert!(
            why.contains("HERALD_JWT_SECRET") && why.contains("HERALD_JWT_JWKS_URL"),
            "{why}"
        );

        let mut short_secret = production();
        short_secret.jwt_secret = Some("too-short".into());
        assert!(refusal(short_secret).await.contains("at least 32 bytes"));

        let mut jwks_for_anyone = production();
        jwks_for_anyone.jwt_secret = None;
        jwks_for_anyone.jwt_jwks_url = Some("https://idp.example/jwks.json".into());
        assert!(refusal(jwks_for_anyone)
            .await
            .contains("HERALD_JWT_AUDIENCE"));

        assert!(production().check_production_secrets().is_ok());
        // The embedded default generates both into its data dir, as before.
        assert!(Config::embedded(std::env::temp_dir())
            .check_production_secrets()
            .is_ok());
    }
}
