//! Aggregate stores: cqrs-es over postgres-es or sqlite-es, behind one type, so the same domain
//! code runs on both. Optimistic-concurrency conflicts are retried here (a fresh load and a new
//! decision), so callers only see a conflict that persists.
use std::collections::HashMap;
use std::sync::Arc;

use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore, SerializedEvent};
use cqrs_es::{Aggregate, AggregateError, CqrsFramework, EventEnvelope, EventStore};
use postgres_es::PostgresEventRepository;
use sqlite_es::SqliteEventRepository;

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
    async fn events(&self, id: &str) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>>;
}

struct CqrsBackend<A: Aggregate, R: PersistedEventRepository> {
    cqrs: CqrsFramework<A, PersistedEventStore<R, A>>,
    store: PersistedEventStore<R, A>,
}

#[async_trait::async_trait]
impl<A, R> Backend<A> for CqrsBackend<A, R>
where
    A: Aggregate + 'static,
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

    async fn events(&self, id: &str) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        self.store.load_events(id).await
    }
}

/// The store for one aggregate type.
pub struct Aggregates<A: Aggregate> {
    backend: Arc<dyn Backend<A>>,
    on_commit: Arc<dyn Fn() + Send + Sync>,
}

impl<A: Aggregate> Clone for Aggregates<A> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            on_commit: self.on_commit.clone(),
        }
    }
}

impl<A> Aggregates<A>
where
    A: Aggregate<Services = ()> + 'static,
    A::Command: Clone + Send,
    A::Error: 'static,
{
    /// `on_commit` runs after every successful command (wakes the local log's consumers).
    pub fn new(db: &Db, on_commit: Arc<dyn Fn() + Send + Sync>) -> Self {
        let backend: Arc<dyn Backend<A>> = match &db.engine {
            Engine::Postgres(pool) => {
                let store = || {
                    PersistedEventStore::new_event_store(PostgresEventRepository::new(pool.clone()))
                        .with_upcasters(crate::upcast::upcasters())
                };
                Arc::new(CqrsBackend {
                    cqrs: CqrsFramework::new(store(), vec![], ()),
                    store: store(),
                })
            }
            Engine::Sqlite(pool) => {
                let store = || {
                    PersistedEventStore::new_event_store(SqliteEventRepository::new(pool.clone()))
                        .with_upcasters(crate::upcast::upcasters())
                };
                Arc::new(CqrsBackend {
                    cqrs: CqrsFramework::new(store(), vec![], ()),
                    store: store(),
                })
            }
        };
        Self { backend, on_commit }
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

/// Serialized form of an event, as stored and as carried on the log.
pub type StoredEvent = SerializedEvent;
