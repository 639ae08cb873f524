//! The connections read model: what `GET /connections` returns, and what the API checks before
//! accepting a job for a connection.
use chrono::{DateTime, Utc};
use herald_domain::connection::ConnectionEvent;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row, Transaction};

use crate::{from_millis, millis, Projection};

/// One connection as users see it. No token, ever.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionView {
    pub connection_id: String,
    pub user_id: String,
    pub platform: String,
    pub account_id: String,
    pub username: String,
    pub display_name: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub scopes: Vec<String>,
    pub token_expires_at: Option<DateTime<Utc>>,
    pub can_refresh: bool,
    /// When the login ends and the user must connect again (LinkedIn: 365 days after the
    /// first authorization); `None` when the platform's logins do not end by themselves.
    pub login_expires_at: Option<DateTime<Utc>>,
    pub connected_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ConnectionView {
    fn from_row(row: &AnyRow) -> anyhow::Result<Self> {
        Ok(ConnectionView {
            connection_id: row.try_get("connection_id")?,
            user_id: row.try_get("user_id")?,
            platform: row.try_get("platform")?,
            account_id: row.try_get("account_id")?,
            username: row.try_get("username")?,
            display_name: row.try_get("display_name")?,
            status: row.try_get("status")?,
            status_reason: row.try_get("status_reason")?,
            scopes: serde_json::from_str(&row.try_get::<String, _>("scopes")?)?,
            token_expires_at: row
                .try_get::<Option<i64>, _>("token_expires_at_ms")?
                .map(from_millis),
            can_refresh: row.try_get::<i32, _>("can_refresh")? != 0,
            login_expires_at: row
                .try_get::<Option<i64>, _>("login_expires_at_ms")?
                .map(from_millis),
            connected_at: from_millis(row.try_get("connected_at_ms")?),
            updated_at: from_millis(row.try_get("updated_at_ms")?),
        })
    }

    async fn save(&self, tx: &mut Transaction<'static, Any>) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO connection_views (connection_id, user_id, platform, account_id, username, display_name,
                status, status_reason, scopes, token_expires_at_ms, can_refresh, connected_at_ms, updated_at_ms,
                login_expires_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (connection_id) DO UPDATE SET username = excluded.username,
                display_name = excluded.display_name, status = excluded.status,
                status_reason = excluded.status_reason, scopes = excluded.scopes,
                token_expires_at_ms = excluded.token_expires_at_ms, can_refresh = excluded.can_refresh,
                connected_at_ms = excluded.connected_at_ms, updated_at_ms = excluded.updated_at_ms,
                login_expires_at_ms = excluded.login_expires_at_ms",
        )
        .bind(&self.connection_id)
        .bind(&self.user_id)
        .bind(&self.platform)
        .bind(&self.account_id)
        .bind(&self.username)
        .bind(&self.display_name)
        .bind(&self.status)
        .bind(&self.status_reason)
        .bind(serde_json::to_string(&self.scopes)?)
        .bind(self.token_expires_at.map(millis))
        .bind(i32::from(self.can_refresh))
        .bind(millis(self.connected_at))
        .bind(millis(self.updated_at))
        .bind(self.login_expires_at.map(millis))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

const SELECT_CONNECTION: &str =
    "SELECT connection_id, user_id, platform, account_id, username, display_name,
    status, status_reason, scopes, token_expires_at_ms, can_refresh, connected_at_ms, updated_at_ms,
    login_expires_at_ms
    FROM connection_views";

/// Queries over the connections read model.
#[derive(Debug, Clone)]
pub struct ConnectionQueries {
    pool: AnyPool,
}

impl ConnectionQueries {
    pub fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// The user's connection, or `None` if it does not exist or belongs to someone else.
    pub async fn get(
        &self,
        user_id: &str,
        connection_id: &str,
    ) -> anyhow::Result<Option<ConnectionView>> {
        let row = sqlx::query(&format!(
            "{SELECT_CONNECTION} WHERE connection_id = $1 AND user_id = $2"
        ))
        .bind(connection_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(ConnectionView::from_row).transpose()
    }

    /// The user's connections, optionally of one platform.
    pub async fn list(
        &self,
        user_id: &str,
        platform: Option<&str>,
    ) -> anyhow::Result<Vec<ConnectionView>> {
        let rows = sqlx::query(&format!(
            "{SELECT_CONNECTION} WHERE user_id = $1 AND ($2 IS NULL OR platform = $2) ORDER BY connected_at_ms, connection_id"
        ))
        .bind(user_id)
        .bind(platform)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ConnectionView::from_row).collect()
    }

    /// The usable (active or failing) connections on `platforms`, of `user` or of every user:
    /// the ones a revocation at the platform could end.
    pub async fn usable_on(
        &self,
        platforms: &[&str],
        user_id: Option<&str>,
    ) -> anyhow::Result<Vec<ConnectionView>> {
        if platforms.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> =
            (2..=platforms.len() + 1).map(|n| format!("${n}")).collect();
        let sql = format!(
            "{SELECT_CONNECTION} WHERE status IN ('active', 'error') AND ($1 IS NULL OR user_id = $1)
               AND platform IN ({})
             ORDER BY connected_at_ms, connection_id",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(user_id);
        for platform in platforms {
            query = query.bind(*platform);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(ConnectionView::from_row).collect()
    }

    /// Active connections whose token expires before `before` and can be refreshed: the
    /// refresher's work list.
    pub async fn expiring(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> anyhow::Result<Vec<ConnectionView>> {
        let rows = sqlx::query(&format!(
            "{SELECT_CONNECTION} WHERE status IN ('active', 'error') AND can_refresh = 1
               AND token_expires_at_ms IS NOT NULL AND token_expires_at_ms < $1
             ORDER BY token_expires_at_ms LIMIT $2"
        ))
        .bind(millis(before))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ConnectionView::from_row).collect()
    }

    /// Usable connections whose login ended before `now`: the refresher marks them expired.
    pub async fn logins_ended(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> anyhow::Result<Vec<ConnectionView>> {
        let rows = sqlx::query(&format!(
            "{SELECT_CONNECTION} WHERE status IN ('active', 'error')
               AND login_expires_at_ms IS NOT NULL AND login_expires_at_ms <= $1
             ORDER BY login_expires_at_ms LIMIT $2"
        ))
        .bind(millis(now))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ConnectionView::from_row).collect()
    }
}

/// Builds `connection_views`.
#[derive(Debug, Default)]
pub struct ConnectionsProjection;

#[async_trait::async_trait]
impl Projection for ConnectionsProjection {
    type Event = ConnectionEvent;

    fn name(&self) -> &'static str {
        "connections"
    }

    fn aggregate_type(&self) -> &'static str {
        "Connection"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["connection_views"]
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'static, Any>,
        aggregate_id: &str,
        _sequence: i64,
        event: &ConnectionEvent,
    ) -> anyhow::Result<()> {
        let existing = sqlx::query(&format!("{SELECT_CONNECTION} WHERE connection_id = $1"))
            .bind(aggregate_id)
            .fetch_optional(&mut **tx)
            .await?
            .as_ref()
            .map(ConnectionView::from_row)
            .transpose()?;
        let view = match (event, existing) {
            (
                ConnectionEvent::Connected {
                    user_id,
                    platform,
                    account,
                    scopes,
                    token_expires_at,
                    can_refresh,
                    login_expires_at,
                    at,
                    ..
                },
                _,
            ) => ConnectionView {
                connection_id: aggregate_id.to_string(),
                user_id: user_id.to_string(),
                platform: platform.to_string(),
                account_id: account.account_id.clone(),
                username: account.username.clone(),
                display_name: account.display_name.clone(),
                status: "active".into(),
                status_reason: None,
                scopes: scopes.clone(),
                token_expires_at: *token_expires_at,
                can_refresh: *can_refresh,
                login_expires_at: *login_expires_at,
                connected_at: *at,
                updated_at: *at,
            },
            (_, None) => {
                anyhow::bail!("connection {aggregate_id} has events but was never connected")
            }
            (
                ConnectionEvent::TokenRefreshed {
                    token_expires_at,
                    login_expires_at,
                    at,
                },
                Some(mut view),
            ) => {
                view.token_expires_at = *token_expires_at;
                if login_expires_at.is_some() {
                    view.login_expires_at = *login_expires_at;
                }
                view.status = "active".into();
                view.status_reason = None;
                view.updated_at = *at;
                view
            }
            (
                ConnectionEvent::TokenRefreshFailed {
                    message,
                    consecutive_failures,
                    at,
                    ..
                },
                Some(mut view),
            ) => {
                if *consecutive_failures >= herald_domain::connection::REFRESH_FAILURES_BEFORE_ERROR
                {
                    view.status = "error".into();
                }
                view.status_reason = Some(format!(
                    "token refresh failed {consecutive_failures} time(s): {message}"
                ));
                view.updated_at = *at;
                view
            }
            (ConnectionEvent::ReauthorizationRequired { reason, at, .. }, Some(mut view)) => {
                view.status = "expired".into();
                view.status_reason = Some(reason.clone());
                view.updated_at = *at;
                view
            }
            (ConnectionEvent::Disconnected { at }, Some(mut view)) => {
                view.status = "disconnected".into();
                view.status_reason = None;
                view.updated_at = *at;
                view
            }
        };
        view.save(tx).await
    }
}
