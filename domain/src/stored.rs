//! Events as they are stored and carried on the log (ARCHITECTURE invariant 10): each aggregate's
//! event type lists its upcasters once ([`VersionedEvent`]), and every reader — the event store,
//! the log consumers and `herald replay` — reads through them, so handlers only ever see the
//! latest shape. Upcasters follow cqrs-es's `EventUpcaster` (`persist/upcaster.rs`) and run the
//! way its event store runs them: in order, each on the events it says it can upcast.
use std::marker::PhantomData;
use std::str::FromStr;

use cqrs_es::persist::{EventUpcaster, SemanticVersion, SerializedEvent};
use cqrs_es::DomainEvent;
use serde_json::Value;

/// Version stamped on every event type from the first release; bump an event's version when its
/// shape changes and add its upcaster to its type's [`VersionedEvent::upcasters`].
pub const EVENT_VERSION_1: &str = "1.0";
/// The second shape of an event type.
pub const EVENT_VERSION_2: &str = "2.0";

/// An aggregate's event type together with what reads its older stored versions.
pub trait VersionedEvent: DomainEvent {
    /// The upcasters from every older version to the current one, oldest first: the event store
    /// and every log reader apply exactly these.
    fn upcasters() -> Vec<Box<dyn EventUpcaster>>;
}

/// Brings one event type from any older version to `version` by rewriting its payload: cqrs-es's
/// `SemanticVersionEventUpcaster`, except that it stamps `version` as written (that one stamps
/// "2.0.0" for "2.0"), so an upcast event carries the version the domain gives the same event.
pub struct PayloadUpcaster {
    event_type: &'static str,
    version: &'static str,
    parsed: SemanticVersion,
    rewrite: fn(Value) -> Value,
}

impl PayloadUpcaster {
    /// Panics if `version` is not a version number: upcasters are constants of the code.
    pub fn new(
        event_type: &'static str,
        version: &'static str,
        rewrite: fn(Value) -> Value,
    ) -> Self {
        Self {
            event_type,
            version,
            parsed: SemanticVersion::from_str(version).expect("an upcaster's version"),
            rewrite,
        }
    }
}

impl EventUpcaster for PayloadUpcaster {
    fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
        event_type == self.event_type
            && SemanticVersion::from_str(event_version)
                .is_ok_and(|stored| self.parsed.supersedes(&stored))
    }

    fn upcast(&self, event: SerializedEvent) -> SerializedEvent {
        SerializedEvent {
            payload: (self.rewrite)(event.payload),
            event_version: self.version.to_string(),
            ..event
        }
    }
}

/// A stored event that could not be read as the current shape, even after upcasting.
#[derive(Debug, thiserror::Error)]
#[error("decoding {event_type} v{event_version} (stored as v{stored_version}): {source}")]
pub struct UnreadableEvent {
    pub event_type: String,
    /// The version after upcasting.
    pub event_version: String,
    /// The version it was stored with.
    pub stored_version: String,
    #[source]
    pub source: serde_json::Error,
}

/// Reads stored events of one type as their latest shape. Built once per consumer, so the
/// upcasters are not rebuilt for every event.
pub struct EventReader<E> {
    upcasters: Vec<Box<dyn EventUpcaster>>,
    event: PhantomData<fn() -> E>,
}

impl<E: VersionedEvent> Default for EventReader<E> {
    fn default() -> Self {
        Self {
            upcasters: E::upcasters(),
            event: PhantomData,
        }
    }
}

impl<E: VersionedEvent> EventReader<E> {
    /// Brings `event` to the latest version of its type (unchanged if it is already).
    pub fn upcast(&self, event: SerializedEvent) -> SerializedEvent {
        self.upcasters.iter().fold(event, |event, upcaster| {
            if upcaster.can_upcast(&event.event_type, &event.event_version) {
                upcaster.upcast(event)
            } else {
                event
            }
        })
    }

    /// Upcasts `event` and decodes its payload.
    pub fn read(&self, event: SerializedEvent) -> Result<E, UnreadableEvent> {
        let stored_version = event.event_version.clone();
        let event = self.upcast(event);
        serde_json::from_value(event.payload).map_err(|source| UnreadableEvent {
            event_type: event.event_type,
            event_version: event.event_version,
            stored_version,
            source,
        })
    }
}

/// Something that applies stored events in per-aggregate order: a projection's feed or a process
/// manager. It is the seam between the event log (infrastructure), which delivers events, and
/// its consumers (projections), which may not depend on each other; cqrs-es keeps its own
/// `Query` beside `Aggregate` for the same reason. A handler must be idempotent (it will see an
/// event again after a crash) and record what it applied in the same transaction as its effect.
#[async_trait::async_trait]
pub trait EventHandler: Send + Sync + 'static {
    /// Consumer name: the key of its stored positions (and its Kafka consumer group).
    fn name(&self) -> &str;
    /// Aggregate types whose events it wants.
    fn aggregate_types(&self) -> &[&'static str];
    /// Applies one event, as stored (its reader upcasts it). An error means "not applied".
    async fn handle(&self, event: &SerializedEvent) -> Result<(), HandlerError>;
    /// Applies events that arrived together, in order, if the handler can make them durable at
    /// once; `None` (the default) means it cannot and they are handled one by one. A failed
    /// batch is handled again one by one, so it must stay idempotent.
    async fn handle_batch(&self, _events: &[SerializedEvent]) -> Option<Result<(), HandlerError>> {
        None
    }
}

/// Why a handler did not apply an event (whatever its own error type; `anyhow::Error` converts).
pub type HandlerError = Box<dyn std::error::Error + Send + Sync + 'static>;
