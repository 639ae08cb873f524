//! Access tokens for platform calls: read from the vault, refreshed before expiry or after a
//! 401, single-flight per connection — within a process through a mutex, across processes
//! through a lease row — with the rotated refresh token stored before anything else happens.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use herald_domain::connection::ConnectionCommand;
use herald_domain::{Connection, ConnectionId, ErrorClass, PlatformFailure};
use tokio::sync::Mutex;

use crate::db::{millis, Db};
use crate::platforms::{Adapters, TokenGrant};
use crate::secret::Secret;
use crate::store::{Aggregates, CommandMetadata};
use crate::vault::Vault;

/// Refresh this long before the platform's expiry.
const EXPIRY_MARGIN: chrono::Duration = chrono::Duration::seconds(60);
/// How old a connection's state may be when checked here: a connection that became unusable a
/// moment ago costs at most one refused platform call, which is handled like any 401.
const CONNECTION_STATE_AGE: Duration = Duration::from_secs(1);
/// How long a cross-process refresh lease lasts.
const REFRESH_LEASE: Duration = Duration::from_secs(30);

/// When a refresh is worth doing; checked again once the single-flight lease is held, so a
/// refresh another worker just did is not repeated.
#[derive(Debug, Clone, Copy)]
pub enum RefreshWhen<'a> {
    /// The platform refused this token: refresh if the vault still holds it (or it expires).
    Rejected(&'a Secret),
    /// The token expires within this window (proactive refresh).
    ExpiringWithin(chrono::Duration),
    /// Unconditionally.
    Always,
}

impl RefreshWhen<'_> {
    fn holds_for(&self, grant: &TokenGrant) -> bool {
        let expires_within =
            |window: chrono::Duration| grant.expires_at.is_some_and(|at| at < Utc::now() + window);
        match self {
            RefreshWhen::Rejected(token) => {
                *token == &grant.access_token || expires_within(EXPIRY_MARGIN)
            }
            RefreshWhen::ExpiringWithin(window) => expires_within(*window),
            RefreshWhen::Always => true,
        }
    }
}

/// Hands out usable access tokens.
#[derive(Clone)]
pub struct TokenService {
    vault: Vault,
    connections: Aggregates<Connection>,
    adapters: Adapters,
    db: Db,
    owner: String,
    local_locks: Arc<Mutex<HashMap<ConnectionId, Arc<Mutex<()>>>>>,
}

fn reauthorize(message: &str) -> PlatformFailure {
    PlatformFailure::new(
        ErrorClass::ReauthorizationRequired,
        "reauthorization_required",
        message,
    )
}

fn internal(error: impl std::fmt::Display) -> PlatformFailure {
    // Our own storage failing is transient from the job's point of view.
    PlatformFailure::new(
        ErrorClass::Retryable,
        "internal",
        format!("Herald could not read its own state: {error}"),
    )
}

impl TokenService {
    pub fn new(
        vault: Vault,
        connections: Aggregates<Connection>,
        adapters: Adapters,
        db: Db,
        owner: impl Into<String>,
    ) -> Self {
        Self {
            vault,
            connections,
            adapters,
            db,
            owner: owner.into(),
            local_locks: Arc::default(),
        }
    }

    /// The vault's sealer, for other secrets that must be stored sealed.
    pub fn sealer(&self) -> &crate::vault::Sealer {
        self.vault.sealer()
    }

    /// A token to call the platform with. `rejected` is a token the platform just refused
    /// (401): if the vault still holds it, it is refreshed; if another worker already replaced
    /// it, the replacement is returned.
    #[tracing::instrument(skip(self, rejected), fields(connection = %connection_id))]
    pub async fn access_token(
        &self,
        connection_id: &ConnectionId,
        rejected: Option<&Secret>,
    ) -> Result<Secret, PlatformFailure> {
        let connection = self
            .connections
            .load_recent(&connection_id.to_string(), CONNECTION_STATE_AGE)
            .await
            .map_err(internal)?;
        if !connection.is_usable() {
            return Err(reauthorize(&format!(
                "the connection is {}: connect the account again",
                connection.status.as_str()
            )));
        }
        let grant = self.current_grant(connection_id, &connection).await?;
        let when = rejected.map_or(
            RefreshWhen::ExpiringWithin(EXPIRY_MARGIN),
            RefreshWhen::Rejected,
        );
        if !when.holds_for(&grant) {
            return Ok(grant.access_token);
        }
        self.refresh(connection_id, when)
            .await
            .map(|g| g.access_token)
    }

    /// The connection's grant from the vault, in the form its adapter works with today.
    async fn current_grant(
        &self,
        connection_id: &ConnectionId,
        connection: &Connection,
    ) -> Result<TokenGrant, PlatformFailure> {
        let stored = self
            .vault
            .load(connection_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| {
                reauthorize("Herald holds no token for this connection: connect the account again")
            })?;
        Ok(match connection.platform.map(|p| self.adapters.get(p)) {
            Some(Ok(adapter)) => adapter.current_form(stored),
            _ => stored,
        })
    }

    /// Moves a connection whose login has ended (see `Connection::login_expires_at`) to
    /// `expired`, with the reason and what to do. `Ok(false)` when the login has not ended.
    #[tracing::instrument(skip(self), fields(connection = %connection_id))]
    pub async fn expire_login(&self, connection_id: &ConnectionId) -> anyhow::Result<bool> {
        let outcome = self
            .connections
            .execute(
                &connection_id.to_string(),
                ConnectionCommand::ExpireLogin { at: Utc::now() },
                &CommandMetadata::actor("token-refresher"),
            )
            .await;
        match outcome {
            Ok(()) => Ok(true),
            Err(cqrs_es::AggregateError::UserError(_)) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Refreshes the connection's token unless someone else just did. Records
    /// `TokenRefreshed`, or `TokenRefreshFailed` (+ `ReauthorizationRequired` for a refused grant).
    #[tracing::instrument(skip(self), fields(connection = %connection_id))]
    pub async fn refresh(
        &self,
        connection_id: &ConnectionId,
        when: RefreshWhen<'_>,
    ) -> Result<TokenGrant, PlatformFailure> {
        let lock = {
            let mut locks = self.local_locks.lock().await;
            locks.entry(*connection_id).or_default().clone()
        };
        let _in_process = lock.lock().await;
        self.acquire_refresh_lease(connection_id).await?;
        let outcome = self.refresh_holding_lease(connection_id, when).await;
        let result = match &outcome {
            Ok(_) => "ok",
            Err(failure) if failure.class == herald_domain::ErrorClass::ReauthorizationRequired => {
                "reauthorization_required"
            }
            Err(_) => "failed",
        };
        metrics::counter!("herald_token_refreshes_total", "outcome" => result).increment(1);
        if let Err(error) = self.release_refresh_lease(connection_id).await {
            tracing::warn!(error = %error, "could not release the refresh lease; it expires by itself");
        }
        outcome
    }

    async fn refresh_holding_lease(
        &self,
        connection_id: &ConnectionId,
        when: RefreshWhen<'_>,
    ) -> Result<TokenGrant, PlatformFailure> {
        let connection = self
            .connections
            .load_recent(&connection_id.to_string(), CONNECTION_STATE_AGE)
            .await
            .map_err(internal)?;
        let grant = self.current_grant(connection_id, &connection).await?;
        // Another worker may have refreshed while we waited for the lease.
        if !when.holds_for(&grant) {
            return Ok(grant);
        }
        let platform = connection
            .platform
            .ok_or_else(|| reauthorize("unknown connection"))?;
        let adapter = self.adapters.get(platform)?;
        // A login that has ended cannot be refreshed; say so instead of asking the platform.
        if connection
            .login_expires_at
            .is_some_and(|at| at <= Utc::now())
        {
            if let Err(error) = self.expire_login(connection_id).await {
                tracing::warn!(error = %error, "could not record the end of the login");
            }
            return Err(reauthorize(&format!(
                "the {} login has ended: connect the account again",
                platform.display_name()
            )));
        }
        let account = connection.account.clone().unwrap_or_default();
        let Some(refresh_token) = grant.refresh_token.clone() else {
            let failure = reauthorize("the access token expired and the platform gave no refresh token: connect the account again");
            self.record_failure(connection_id, &failure).await;
            return Err(failure);
        };
        match adapter.refresh(&account, &refresh_token).await {
            Ok(mut fresh) => {
                // Platforms that do not rotate keep the old refresh token valid.
                if fresh.refresh_token.is_none() {
                    fresh.refresh_token = Some(refresh_token);
                }
                // A renewal does not change whose login it is.
                if fresh.login_id.is_none() {
                    fresh.login_id = grant.login_id.clone();
                }
                self.vault
                    .store(connection_id, &fresh)
                    .await
                    .map_err(internal)?;
                self.record(
                    connection_id,
                    ConnectionCommand::RecordTokenRefreshed {
                        token_expires_at: fresh.expires_at,
                        login_expires_at: fresh.refresh_token_expires_at,
                        at: Utc::now(),
                    },
                )
                .await;
                Ok(fresh)
            }
            Err(failure) => {
                self.record_failure(connection_id, &failure).await;
                Err(failure)
            }
        }
    }

    async fn record_failure(&self, connection_id: &ConnectionId, failure: &PlatformFailure) {
        let command = ConnectionCommand::RecordTokenRefreshFailure {
            failure: failure.clone(),
            at: Utc::now(),
        };
        self.record(connection_id, command).await;
    }

    /// Records what a refresh did. The tokens are already in the vault; failing to record only
    /// leaves the connection's status behind, so it is logged rather than returned.
    async fn record(&self, connection_id: &ConnectionId, command: ConnectionCommand) {
        if let Err(error) = self
            .connections
            .execute(
                &connection_id.to_string(),
                command,
                &CommandMetadata::actor("token-refresher"),
            )
            .await
        {
            tracing::warn!(error = %error, "could not record the token refresh outcome");
        }
    }

    async fn acquire_refresh_lease(
        &self,
        connection_id: &ConnectionId,
    ) -> Result<(), PlatformFailure> {
        let deadline = tokio::time::Instant::now() + REFRESH_LEASE;
        loop {
            let now = millis(Utc::now());
            let taken = sqlx::query(
                "INSERT INTO refresh_locks (connection_id, owner, until_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (connection_id) DO UPDATE SET owner = excluded.owner, until_ms = excluded.until_ms
                 WHERE refresh_locks.until_ms < $4",
            )
            .bind(connection_id.to_string())
            .bind(&self.owner)
            .bind(now + REFRESH_LEASE.as_millis() as i64)
            .bind(now)
            .execute(&self.db.any)
            .await
            .map_err(internal)?
            .rows_affected();
            if taken == 1 {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(PlatformFailure::new(
                    ErrorClass::Retryable,
                    "refresh_in_progress",
                    "another worker is refreshing this connection's token",
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn release_refresh_lease(&self, connection_id: &ConnectionId) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM refresh_locks WHERE connection_id = $1 AND owner = $2")
            .bind(connection_id.to_string())
            .bind(&self.owner)
            .execute(&self.db.any)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(token: &str, expires_in: i64) -> TokenGrant {
        TokenGrant {
            access_token: Secret::new(token),
            refresh_token: Some(Secret::new("r")),
            expires_at: Some(Utc::now() + chrono::Duration::seconds(expires_in)),
            scopes: vec![],
            refresh_token_expires_at: None,
            login_id: None,
        }
    }

    #[test]
    fn refresh_when_expiring_or_when_the_held_token_was_rejected() {
        let rejected = Secret::new("a");
        let soon = RefreshWhen::ExpiringWithin(EXPIRY_MARGIN);
        assert!(!soon.holds_for(&grant("a", 3600)));
        assert!(soon.holds_for(&grant("a", 30)));
        assert!(
            RefreshWhen::ExpiringWithin(chrono::Duration::minutes(5)).holds_for(&grant("a", 120))
        );
        assert!(RefreshWhen::Rejected(&rejected).holds_for(&grant("a", 3600)));
        // Someone already replaced the rejected token: use the new one.
        assert!(!RefreshWhen::Rejected(&rejected).holds_for(&grant("b", 3600)));
        assert!(RefreshWhen::Always.holds_for(&grant("b", 3600)));
    }
}
