//! The token refresher: refreshes tokens shortly before they expire, so publishing rarely meets
//! an expired token. Refreshes are single-flight per connection (see `TokenService`); a refused
//! grant marks the connection `expired`, which takes it off this list — no retry storm. A
//! connection whose login has ended (LinkedIn's 365-day refresh token) is marked `expired` with
//! what to do, before anything is asked of the platform.
use std::time::Duration;

use chrono::Utc;
use herald_domain::ConnectionId;
use tokio_util::sync::CancellationToken;

use crate::tokens::{RefreshWhen, TokenService};

/// Refresh tokens that expire within this window.
const AHEAD: chrono::Duration = chrono::Duration::minutes(5);

/// Where the refresher learns which connections expire soon (the connections read model).
#[async_trait::async_trait]
pub trait ExpiringConnections: Send + Sync {
    /// Refreshable, usable connections whose token expires before `before`.
    async fn expiring(&self, before: chrono::DateTime<Utc>) -> anyhow::Result<Vec<ConnectionId>>;
    /// Usable connections whose login ended before `now`.
    async fn logins_ended(&self, now: chrono::DateTime<Utc>) -> anyhow::Result<Vec<ConnectionId>>;
}

/// Scans for expiring tokens every `every` until shutdown.
pub async fn run(
    tokens: TokenService,
    connections: impl ExpiringConnections,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        match connections.logins_ended(Utc::now()).await {
            Ok(ended) => {
                for id in ended {
                    match tokens.expire_login(&id).await {
                        Ok(true) => {
                            tracing::info!(connection = %id, "the login has ended; the connection needs the user")
                        }
                        Ok(false) => {}
                        Err(error) => {
                            tracing::warn!(connection = %id, error = %error, "could not record the end of the login")
                        }
                    }
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, "could not list connections whose login ended")
            }
        }
        match connections.expiring(Utc::now() + AHEAD).await {
            Ok(expiring) => {
                for id in expiring {
                    if let Err(failure) = tokens
                        .refresh(&id, RefreshWhen::ExpiringWithin(AHEAD))
                        .await
                    {
                        tracing::info!(connection = %id, %failure, "proactive token refresh failed");
                    }
                }
            }
            Err(error) => tracing::warn!(error = %error, "could not list expiring connections"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
