//! The `PublishingJob` aggregate: one content published to one connection, with every attempt,
//! upload step and outcome recorded.
mod aggregate;
mod commands;
mod error;
mod events;
mod upcast;

pub use aggregate::{
    JobStatus, NextStep, PublishingJob, UploadSession, DEFAULT_MAX_ATTEMPTS, MAX_MANUAL_RETRIES,
};
pub use commands::{FoundPost, PublishingJobCommand, SchedulePublish};
pub use error::PublishingJobError;
pub use events::PublishingJobEvent;
