//! Herald's domain: the `Connection` and `PublishingJob` aggregates, their value objects and the
//! pure decisions of the process managers. No I/O lives here: everything a decision needs is
//! carried in the command.
#![forbid(unsafe_code)]

pub mod connection;
pub mod content;
pub mod failure;
pub mod ids;
pub mod options;
pub mod platform;
pub mod publishing_job;
pub mod retry;
pub mod rules_table;
pub mod stored;
pub mod webhook;

pub use connection::Connection;
pub use content::{
    Content, ContentError, ContentOverride, MediaItem, MediaKind, Poll, PreparedContent, VideoProbe,
};
pub use failure::{ErrorClass, PlatformFailure};
pub use ids::{AttemptId, ConnectionId, JobId, UserId};
pub use options::PublishOptions;
pub use platform::Platform;
pub use publishing_job::PublishingJob;
pub use rules_table::{RulesOverride, RulesTable};
pub use stored::{
    EventHandler, EventReader, HandlerError, VersionedEvent, EVENT_VERSION_1, EVENT_VERSION_2,
};
