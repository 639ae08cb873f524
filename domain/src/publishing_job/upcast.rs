//! Every older stored shape of a `PublishingJobEvent`, brought to the current one. This list is
//! what the event store, the log consumers and `herald replay` all apply.
use cqrs_es::persist::EventUpcaster;
use serde_json::Value;

use super::events::PublishingJobEvent;
use crate::stored::PayloadUpcaster;
use crate::{VersionedEvent, EVENT_VERSION_2};

impl VersionedEvent for PublishingJobEvent {
    fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
        vec![Box::new(PayloadUpcaster::new(
            "Published",
            EVENT_VERSION_2,
            published_v2,
        ))]
    }
}

/// `Published` 1 → 2: `url` becomes `first_post_url`, and `post_id` goes (it is the head of
/// `post_ids`; it stands in for `post_ids` should those be missing).
fn published_v2(mut payload: Value) -> Value {
    if let Some(Value::Object(fields)) = payload.get_mut("Published") {
        let post_id = fields.remove("post_id");
        if let Some(url) = fields.remove("url") {
            fields.insert("first_post_url".into(), url);
        }
        let has_ids = fields
            .get("post_ids")
            .and_then(Value::as_array)
            .is_some_and(|ids| !ids.is_empty());
        if let (false, Some(post_id)) = (has_ids, post_id) {
            fields.insert("post_ids".into(), Value::Array(vec![post_id]));
        }
    }
    payload
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use cqrs_es::persist::SerializedEvent;
    use cqrs_es::DomainEvent;
    use serde_json::{json, Value};

    use super::*;
    use crate::{AttemptId, EventReader, EVENT_VERSION_1};

    fn stored(version: &str, payload: Value) -> SerializedEvent {
        SerializedEvent::new(
            "job-1".into(),
            3,
            "PublishingJob".into(),
            "Published".into(),
            version.into(),
            payload,
            json!({}),
        )
    }

    fn attempt() -> AttemptId {
        AttemptId::parse("7d9e3c1e-26a2-4d5e-9f00-8a1f3f0b9c11").unwrap()
    }

    #[test]
    fn a_version_1_published_reads_as_version_2() {
        let v1 = json!({"Published": {
            "attempt_id": attempt(),
            "post_id": "1",
            "url": "https://x.test/a/status/1",
            "post_ids": ["1", "2"],
            "at": "2026-12-01T09:00:00Z",
        }});
        let reader = EventReader::<PublishingJobEvent>::default();
        assert_eq!(
            reader
                .upcast(stored(EVENT_VERSION_1, v1.clone()))
                .event_version,
            EVENT_VERSION_2
        );
        assert_eq!(
            reader.read(stored(EVENT_VERSION_1, v1)).unwrap(),
            PublishingJobEvent::Published {
                attempt_id: attempt(),
                post_ids: vec!["1".into(), "2".into()],
                first_post_url: "https://x.test/a/status/1".into(),
                at: Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap(),
            }
        );
    }

    #[test]
    fn a_version_1_published_without_post_ids_keeps_its_post() {
        let v1 = json!({"Published": {
            "attempt_id": attempt(),
            "post_id": "9",
            "url": "u",
            "post_ids": [],
            "at": "2026-12-01T09:00:00Z",
        }});
        let event = EventReader::<PublishingJobEvent>::default()
            .read(stored(EVENT_VERSION_1, v1))
            .unwrap();
        assert!(
            matches!(&event, PublishingJobEvent::Published { post_ids, .. } if post_ids == &["9"]),
            "{event:?}"
        );
    }

    #[test]
    fn version_2_is_read_as_written_and_version_1_is_not_read_without_the_upcaster() {
        let event = PublishingJobEvent::Published {
            attempt_id: attempt(),
            post_ids: vec!["5".into()],
            first_post_url: "u5".into(),
            at: Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap(),
        };
        assert_eq!(event.event_version(), EVENT_VERSION_2);
        let written = serde_json::to_value(&event).unwrap();
        let reader = EventReader::<PublishingJobEvent>::default();
        assert_eq!(
            reader.read(stored(EVENT_VERSION_2, written)).unwrap(),
            event
        );
        // The upcaster is what makes version 1 readable: the shapes differ.
        let v1 = json!({"Published": {
            "attempt_id": attempt(), "post_id": "5", "url": "u5", "post_ids": ["5"],
            "at": "2026-12-01T09:00:00Z",
        }});
        assert!(serde_json::from_value::<PublishingJobEvent>(v1).is_err());
    }

    #[test]
    fn other_events_pass_through() {
        let cancelled = json!({"Cancelled": {"at": "2026-12-01T09:00:00Z"}});
        let mut event = stored(EVENT_VERSION_1, cancelled.clone());
        event.event_type = "Cancelled".into();
        let upcast = EventReader::<PublishingJobEvent>::default().upcast(event.clone());
        assert_eq!(upcast, event);
    }
}
