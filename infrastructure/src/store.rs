//! Aggregate stores: cqrs-es over postgres-es or sqlite-es, behind one type, so the same domain
//! code runs on both. Optimistic-concurrency conflicts are retried here (a fresh load and a new
//! decision), so callers only see a conflict that persists.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{
    EventStoreAggregateContext, PersistedEventRepository, PersistedEventStore, SerializedEvent,
};
use cqrs_es::{Aggregate, AggregateError, CqrsFramework, EventEnvelope, EventStore};
use herald_domain::VersionedEvent;
use postgres_es::PostgresEventRepository;
use sqlite_es::SqliteEventRepository;
use sqlx::Row;

use crate::db::{Db, Engine};

/// How many times a command is re-run after an optimistic-concurrency conflict.
const CONFLICT_RETRIES: usize = 5;

/// Who asked and why: stored as event metadata for the audit trail.
#[derive(Debug, Clone, Default)]
pub struct CommandMetadata {
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub actor: Option<String>,
}

impl CommandMetadata {
    pub fn actor(actor: impl Into<String>) -> Self {
        Self {
            actor: Some(actor.into()),
            ..Self::default()
        }
    }

    pub fn correlated(mut self, correlation_id: impl Into<String>) -> Self {
        self.correlation_id = Some(correlation_id.into());
        self
    }

    fn to_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::new();
        for (key, value) in [
            ("correlation_id", &self.correlation_id),
            ("causation_id", &self.causation_id),
            ("actor", &self.actor),
        ] {
            if let Some(value) = value {
                map.insert(key.to_string(), value.clone());
            }
        }
        map
    }
}

#[async_trait::async_trait]
trait Backend<A: Aggregate>: Send + Sync {
    async fn execute(
        &self,
        id: &str,
        command: A::Command,
        metadata: HashMap<String, String>,
    ) -> Result<(), AggregateError<A::Error>>;
    async fn load(&self, id: &str) -> Result<A, AggregateError<A::Error>>;
    /// Decides on a fresh aggregate and commits at sequence 0, without loading anything; an
    /// existing stream makes the insert conflict.
    async fn create(
        &self,
        id: &str,
        command: A::Command,
        metadata: HashMap<String, String>,
    ) -> Result<(), AggregateError<A::Error>>;
    async fn events(&self, id: &str) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>>;
}

struct CqrsBackend<A: Aggregate, R: PersistedEventRepository> {
    cqrs: CqrsFramework<A, PersistedEventStore<R, A>>,
    store: PersistedEventStore<R, A>,
}

#[async_trait::async_trait]
impl<A, R> Backend<A> for CqrsBackend<A, R>
where
    A: Aggregate<Services = ()> + 'static,
    A::Command: Send,
    R: PersistedEventRepository + 'static,
{
    async fn execute(
        &self,
        id: &str,
        command: A::Command,
        metadata: HashMap<String, String>,
    ) -> Result<(), AggregateError<A::Error>> {
        self.cqrs.execute_with_metadata(id, command, metadata).await
    }

    async fn load(&self, id: &str) -> Result<A, AggregateError<A::Error>> {
        let events = self.store.load_events(id).await?;
        let mut aggregate = A::default();
        for envelope in events {
            aggregate.apply(envelope.payload);
        }
        Ok(aggregate)
    }

    async fn create(
        &self,
        id: &str,
        command: A::Command,
        metadata: HashMap<String, String>,
    ) -> Result<(), AggregateError<A::Error>> {
        let mut aggregate = A::default();
        let sink = EventSink::default();
        aggregate
            .handle(command, &(), &sink)
            .await
            .map_err(AggregateError::UserError)?;
        let events = sink.collect().await;
        if events.is_empty() {
            return Ok(());
        }
        let context = EventStoreAggregateContext {
            aggregate_id: id.to_string(),
            aggregate,
            current_sequence: 0,
            current_snapshot: None,
        };
        self.store
            .commit(events, context, metadata)
            .await
            .map(|_| ())
    }

    async fn events(&self, id: &str) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        self.store.load_events(id).await
    }
}

/// The store for one aggregate type.
pub struct Aggregates<A: Aggregate> {
    backend: Arc<dyn Backend<A>>,
    on_commit: Arc<dyn Fn() + Send + Sync>,
    recent: Arc<Mutex<HashMap<String, (Instant, A)>>>,
}

impl<A: Aggregate> Clone for Aggregates<A> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            on_commit: self.on_commit.clone(),
            recent: self.recent.clone(),
        }
    }
}

impl<A> Aggregates<A>
where
    A: Aggregate<Services = ()> + 'static,
    A::Command: Clone + Send,
    A::Error: 'static,
    A::Event: VersionedEvent,
{
    /// `on_commit` runs after every successful command (wakes the local log's consumers).
    pub fn new(db: &Db, on_commit: Arc<dyn Fn() + Send + Sync>) -> Self {
        let backend: Arc<dyn Backend<A>> = match &db.engine {
            Engine::Postgres(pool) => {
                let store = || {
                    PersistedEventStore::new_event_store(PostgresEventRepository::new(pool.clone()))
                        .with_upcasters(A::Event::upcasters())
                };
                Arc::new(CqrsBackend {
                    cqrs: CqrsFramework::new(store(), vec![], ()),
                    store: store(),
                })
            }
            Engine::Sqlite(pool) => {
                let store = || {
                    PersistedEventStore::new_event_store(SqliteEventRepository::new(pool.clone()))
                        .with_upcasters(A::Event::upcasters())
                };
                Arc::new(CqrsBackend {
                    cqrs: CqrsFramework::new(store(), vec![], ()),
                    store: store(),
                })
            }
        };
        Self {
            backend,
            on_commit,
            recent: Arc::default(),
        }
    }

    /// Runs a command against the aggregate `id`, retrying optimistic conflicts.
    pub async fn execute(
        &self,
        id: &str,
        command: A::Command,
        metadata: &CommandMetadata,
    ) -> Result<(), AggregateError<A::Error>> {
        let mut tries = 0;
        loop {
            match self
                .backend
                .execute(id, command.clone(), metadata.to_map())
                .await
            {
                Err(AggregateError::AggregateConflict) if tries < CONFLICT_RETRIES => {
                    tries += 1;
                    tracing::debug!(
                        aggregate = A::TYPE,
                        id,
                        tries,
                        "optimistic conflict, retrying"
                    );
                }
                Ok(()) => {
                    (self.on_commit)();
                    return Ok(());
                }
                other => return other,
            }
        }
    }

    /// Runs a command that starts a new aggregate, skipping the load of a stream that should not
    /// exist yet; if it does exist (an id reused on purpose, as with idempotency keys), falls
    /// back to `execute`, which decides against the real state.
    pub async fn create(
        &self,
        id: &str,
        command: A::Command,
        metadata: &CommandMetadata,
    ) -> Result<(), AggregateError<A::Error>> {
        match self
            .backend
            .create(id, command.clone(), metadata.to_map())
            .await
        {
            Ok(()) => {
                (self.on_commit)();
                Ok(())
            }
            Err(AggregateError::AggregateConflict) => self.execute(id, command, metadata).await,
            Err(error) => Err(error),
        }
    }

    /// The aggregate's current state (default state if it has no events).
    pub async fn load(&self, id: &str) -> Result<A, AggregateError<A::Error>> {
        self.backend.load(id).await
    }

    /// Every event of the aggregate in order, with sequence and metadata: the audit trail.
    pub async fn events(
        &self,
        id: &str,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        self.backend.events(id).await
    }
}

impl<A> Aggregates<A>
where
    A: Aggregate<Services = ()> + Clone + 'static,
    A::Command: Clone + Send,
    A::Error: 'static,
    A::Event: VersionedEvent,
{
    /// The aggregate's state as loaded at most `max_age` ago: for checks where a second of
    /// staleness is harmless (a connection's owner never changes; its status is checked again
    /// when the job runs).
    pub async fn load_recent(
        &self,
        id: &str,
        max_age: Duration,
    ) -> Result<A, AggregateError<A::Error>> {
        if let Some((at, state)) = self.recent.lock().expect("cache lock").get(id) {
            if at.elapsed() <= max_age {
                return Ok(state.clone());
            }
        }
        let state = self.load(id).await?;
        let mut recent = self.recent.lock().expect("cache lock");
        if recent.len() >= RECENT_CAPACITY {
            recent.retain(|_, (at, _)| at.elapsed() <= max_age);
            if recent.len() >= RECENT_CAPACITY {
                recent.clear();
            }
        }
        recent.insert(id.to_string(), (Instant::now(), state.clone()));
        Ok(state)
    }
}

/// Entries kept by `load_recent` before expired ones are dropped.
const RECENT_CAPACITY: usize = 10_000;

/// One page of an aggregate type's stored events as stored (not upcast: the reader does that),
/// in stream then sequence order, starting after position `after` (`(stream id, sequence)`;
/// `("", -1)` for the first page). Reading page by page keeps a rebuild's memory constant
/// however long the history is; each page is a range of the primary key.
pub async fn stored_events_page(
    db: &Db,
    aggregate_type: &str,
    after: (&str, i64),
    limit: i64,
) -> anyhow::Result<Vec<SerializedEvent>> {
    // JSON text in SQLite and json in Postgres; read both as text.
    let sql = if db.is_postgres() {
        "SELECT aggregate_id, sequence, event_type, event_version, payload::text AS payload, metadata::text AS metadata
         FROM events WHERE aggregate_type = $1 AND (aggregate_id, sequence) > ($2, $3)
         ORDER BY aggregate_id, sequence LIMIT $4"
    } else {
        "SELECT aggregate_id, sequence, event_type, event_version, payload, metadata
         FROM events WHERE aggregate_type = $1 AND (aggregate_id, sequence) > ($2, $3)
         ORDER BY aggregate_id, sequence LIMIT $4"
    };
    let rows = sqlx::query(sql)
        .bind(aggregate_type)
        .bind(after.0)
        .bind(after.1)
        .bind(limit)
        .fetch_all(&db.any)
        .await
        .context("reading the event store")?;
    rows.iter()
        .map(|row| {
            Ok(SerializedEvent::new(
                row.try_get("aggregate_id")?,
                usize::try_from(row.try_get::<i64, _>("sequence")?)?,
                aggregate_type.to_string(),
                row.try_get("event_type")?,
                row.try_get("event_version")?,
                serde_json::from_str(&row.try_get::<String, _>("payload")?)?,
                serde_json::from_str(&row.try_get::<String, _>("metadata")?)?,
            ))
        })
        .collect()
}
