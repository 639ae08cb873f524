//! Upcasters (ARCHITECTURE invariant 10): old event versions are rewritten to the current shape
//! on read, so aggregates, projections and process managers only ever see the latest version.
//! Every event is at version 1.0 so far; when a shape changes, bump its `event_version` in the
//! domain and add a `SemanticVersionEventUpcaster` here.
use cqrs_es::persist::EventUpcaster;

/// The upcasters applied by the event store and by log consumers.
pub fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
    Vec::new()
}
