//! One database handle for the whole process: the typed pool the event store needs
//! (postgres-es or sqlite-es) and an `AnyPool` over the same database for everything else
//! (runtime tables, read models), so that SQL written once runs on both engines. Queries use
//! `$1`-style placeholders, which both drivers accept.
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::AnyPoolOptions;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::AnyPool;

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// Which engine holds the events.
#[derive(Debug, Clone)]
pub enum Engine {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// The process's database.
#[derive(Debug, Clone)]
pub struct Db {
    pub engine: Engine,
    pub any: AnyPool,
}

/// Creates an empty Postgres database named `{prefix}_{random}` on the server `admin_url`
/// reaches; returns its URL and name. For runs that need a store of their own (`herald bench`,
/// tests), so they never touch an operator's data.
pub async fn create_scratch_database(
    admin_url: &str,
    prefix: &str,
) -> anyhow::Result<(String, String)> {
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(admin_url)
        .await
        .context("connecting to Postgres")?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .with_context(|| format!("creating the database {name}"))?;
    pool.close().await;
    let mut url = url::Url::parse(admin_url).context("the Postgres URL")?;
    url.set_path(&name);
    Ok((url.to_string(), name))
}

impl Db {
    /// Connects to `url` (`postgres://...` or `sqlite://path`), creating a SQLite file if needed,
    /// and applies the migrations.
    #[tracing::instrument(skip_all)]
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let engine = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
                .context("connecting to Postgres")?;
            POSTGRES_MIGRATIONS
                .run(&pool)
                .await
                .context("applying Postgres migrations")?;
            Engine::Postgres(pool)
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .context("parsing the SQLite URL")?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // Two pools share the file; wait for the writer instead of failing.
                .busy_timeout(Duration::from_secs(10));
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections.min(4))
                .connect_with(options)
                .await
                .context("opening the SQLite database")?;
            SQLITE_MIGRATIONS
                .run(&pool)
                .await
                .context("applying SQLite migrations")?;
            Engine::Sqlite(pool)
        } else {
            anyhow::bail!("DATABASE_URL must start with postgres:// or sqlite:");
        };
        let any_url = match &engine {
            Engine::Postgres(_) => url.to_string(),
            Engine::Sqlite(_) => sqlite_any_url(url),
        };
        let any = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // Only SQLite understands this; Postgres ignores nothing, so guard by backend.
                    if conn.backend_name() == "SQLite" {
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&any_url)
            .await
            .context("opening the shared pool")?;
        Ok(Db { engine, any })
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.engine, Engine::Postgres(_))
    }
}

/// The Any driver reads plain `sqlite:` URLs; drop options only the typed driver knows.
fn sqlite_any_url(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

/// Milliseconds since the epoch: how runtime tables store instants (portable across engines).
pub fn millis(at: chrono::DateTime<chrono::Utc>) -> i64 {
    at.timestamp_millis()
}

/// The instant for stored milliseconds.
pub fn from_millis(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
