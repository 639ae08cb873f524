//! Identifiers. Newtypes so a job id can never be passed where a connection id is meant.
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Platform;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }
            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
            /// Parses the canonical hyphenated form.
            pub fn parse(s: &str) -> Result<Self, uuid::Error> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A publishing job: one content to one connection.
    JobId
);
uuid_id!(
    /// One try at publishing a job. Recorded before any irreversible platform call.
    AttemptId
);
uuid_id!(
    /// A connected platform account of one user.
    ConnectionId
);

/// Namespace for deterministic ids derived from natural keys (uuid v5).
const HERALD_NAMESPACE: Uuid = Uuid::from_u128(0x6865_7261_6c64_4000_8000_0000_0000_0001);

impl ConnectionId {
    /// The same user connecting the same platform account again lands on the same connection.
    pub fn for_account(user: &UserId, platform: Platform, account_id: &str) -> Self {
        let key = format!("{}|{}|{}", user.as_str(), platform.as_str(), account_id);
        Self(Uuid::new_v5(&HERALD_NAMESPACE, key.as_bytes()))
    }
}

impl JobId {
    /// Deterministic job id for an idempotent publish request: same user, key and target → same job.
    pub fn for_idempotency_key(user: &UserId, key: &str, connection: &ConnectionId) -> Self {
        let name = format!("{}|{}|{}", user.as_str(), key, connection);
        Self(Uuid::new_v5(&HERALD_NAMESPACE, name.as_bytes()))
    }
}

/// The authenticated user (the JWT `sub`). Opaque to Herald.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    /// A user id is any non-empty subject of at most 255 characters without control characters.
    pub fn parse(s: &str) -> Result<Self, InvalidUserId> {
        let trimmed = s.trim();
        if trimmed.is_empty() || trimmed.len() > 255 || trimmed.chars().any(char::is_control) {
            return Err(InvalidUserId);
        }
        Ok(Self(trimmed.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The token subject was empty, too long or had control characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("user id must be 1-255 printable characters")]
pub struct InvalidUserId;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids_are_stable_per_user_platform_and_account() {
        let alice = UserId::parse("alice").unwrap();
        let bob = UserId::parse("bob").unwrap();
        let a1 = ConnectionId::for_account(&alice, Platform::X, "42");
        assert_eq!(a1, ConnectionId::for_account(&alice, Platform::X, "42"));
        assert_ne!(a1, ConnectionId::for_account(&bob, Platform::X, "42"));
        assert_ne!(a1, ConnectionId::for_account(&alice, Platform::X, "43"));
    }

    #[test]
    fn user_ids_reject_empty_and_control_characters() {
        assert_eq!(UserId::parse("  "), Err(InvalidUserId));
        assert_eq!(UserId::parse("a\nb"), Err(InvalidUserId));
        assert_eq!(UserId::parse(" carol ").unwrap().as_str(), "carol");
    }
}
