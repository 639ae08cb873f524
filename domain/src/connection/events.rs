use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::commands::AccountProfile;
use crate::{ConnectionId, ErrorClass, Platform, UserId, VersionedEvent, EVENT_VERSION_1};

/// Everything that happened to a connection. No token appears here, ever.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConnectionEvent {
    Connected {
        connection_id: ConnectionId,
        user_id: UserId,
        platform: Platform,
        account: AccountProfile,
        scopes: Vec<String>,
        token_expires_at: Option<DateTime<Utc>>,
        can_refresh: bool,
        /// When the login ends and the user must connect again (absent in events written
        /// before Herald recorded it, and for platforms whose logins do not end).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        login_expires_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    TokenRefreshed {
        token_expires_at: Option<DateTime<Utc>>,
        /// The login's end as the platform restated it with the new tokens (absent: unchanged).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        login_expires_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    TokenRefreshFailed {
        class: ErrorClass,
        code: String,
        message: String,
        consecutive_failures: u32,
        at: DateTime<Utc>,
    },
    ReauthorizationRequired {
        reason: String,
        /// Why, as a fact a program can act on (`reason` says it in words). Absent in events
        /// written before Herald recorded it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<ReauthorizationCause>,
        at: DateTime<Utc>,
    },
    Disconnected {
        at: DateTime<Utc>,
    },
}

/// Why a connection needs its user to connect the account again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReauthorizationCause {
    /// The login reached the end the platform gives every login (LinkedIn's 365 days).
    LoginEnded,
    /// The platform says the account removed Herald's access.
    AccessRemoved,
    /// The platform refused to refresh the token.
    RefreshRefused,
}

impl DomainEvent for ConnectionEvent {
    fn event_type(&self) -> String {
        match self {
            ConnectionEvent::Connected { .. } => "Connected",
            ConnectionEvent::TokenRefreshed { .. } => "TokenRefreshed",
            ConnectionEvent::TokenRefreshFailed { .. } => "TokenRefreshFailed",
            ConnectionEvent::ReauthorizationRequired { .. } => "ReauthorizationRequired",
            ConnectionEvent::Disconnected { .. } => "Disconnected",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION_1.to_string()
    }
}

impl VersionedEvent for ConnectionEvent {
    /// Every connection event is still at its first version.
    fn upcasters() -> Vec<Box<dyn cqrs_es::persist::EventUpcaster>> {
        Vec::new()
    }
}
