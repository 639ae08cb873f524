//! Feeds a projection from stored events — live from the event log, or from the event store when
//! `herald replay` rebuilds it — through the same steps: upcast and decode, then apply once.
use anyhow::Context;
use cqrs_es::persist::SerializedEvent;
use herald_domain::{EventHandler, EventReader, HandlerError};
use sqlx::AnyPool;

use crate::{apply_in, apply_once, rebuild_in, reset, Projection, StreamRun};

/// One projection as an [`EventHandler`]: the event log runs it as a consumer, and replay calls
/// [`ProjectionHandler::apply`] on every stored event.
pub struct ProjectionHandler<P: Projection> {
    projection: P,
    pool: AnyPool,
    reader: EventReader<P::Event>,
    types: [&'static str; 1],
}

impl<P: Projection> ProjectionHandler<P> {
    /// `projection` over the read-model database `pool`.
    pub fn new(projection: P, pool: AnyPool) -> Self {
        let types = [projection.aggregate_type()];
        Self {
            projection,
            pool,
            reader: EventReader::default(),
            types,
        }
    }

    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// Applies one stored event unless already applied; returns whether it was.
    pub async fn apply(&self, event: &SerializedEvent) -> anyhow::Result<bool> {
        let (aggregate_id, sequence, decoded) = self.decode(event)?;
        apply_once(
            &self.pool,
            &self.projection,
            aggregate_id,
            sequence,
            &decoded,
        )
        .await
    }

    /// Applies events in one transaction: one commit instead of one per event.
    pub async fn apply_batch(&self, events: &[SerializedEvent]) -> anyhow::Result<()> {
        let decoded = events
            .iter()
            .map(|event| self.decode(event))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut tx = self.pool.begin().await?;
        let mut applied = Vec::new();
        for (aggregate_id, sequence, event) in &decoded {
            if apply_in(&mut tx, &self.projection, aggregate_id, *sequence, event).await? {
                applied.push(event);
            }
        }
        tx.commit().await?;
        for event in applied {
            self.projection.after_commit(event);
        }
        Ok(())
    }

    /// The event in its latest shape, with the stream and position it is recorded under.
    fn decode<'a>(&self, event: &'a SerializedEvent) -> anyhow::Result<(&'a str, i64, P::Event)> {
        let sequence = i64::try_from(event.sequence).context("event sequence out of range")?;
        let decoded = self.reader.read(event.clone())?;
        Ok((&event.aggregate_id, sequence, decoded))
    }
}

#[async_trait::async_trait]
impl<P: Projection> EventHandler for ProjectionHandler<P> {
    fn name(&self) -> &str {
        self.projection.name()
    }

    fn aggregate_types(&self) -> &[&'static str] {
        &self.types
    }

    async fn handle(&self, event: &SerializedEvent) -> Result<(), HandlerError> {
        self.apply(event).await.map(|_| ()).map_err(Into::into)
    }

    async fn handle_batch(&self, events: &[SerializedEvent]) -> Option<Result<(), HandlerError>> {
        Some(self.apply_batch(events).await.map_err(Into::into))
    }
}

/// A projection as `herald replay` drives it, whatever its event type.
#[async_trait::async_trait]
pub trait Rebuild: Send + Sync {
    fn name(&self) -> &'static str;
    /// The aggregate type whose events it is fed.
    fn aggregate_type(&self) -> &'static str;
    /// Empties its tables and stored positions.
    async fn reset(&self) -> anyhow::Result<()>;
    /// Applies stored events (ordered by stream, then sequence, as the event store lists them)
    /// in one transaction, each stream's run through [`Projection::apply_stream`]. Returns how
    /// many events were applied.
    async fn rebuild_batch(&self, events: &[SerializedEvent]) -> anyhow::Result<u64>;
}

#[async_trait::async_trait]
impl<P: Projection> Rebuild for ProjectionHandler<P> {
    fn name(&self) -> &'static str {
        self.projection.name()
    }

    fn aggregate_type(&self) -> &'static str {
        self.projection.aggregate_type()
    }

    async fn reset(&self) -> anyhow::Result<()> {
        reset(&self.pool, &self.projection).await
    }

    async fn rebuild_batch(&self, events: &[SerializedEvent]) -> anyhow::Result<u64> {
        let runs = events
            .chunk_by(|a, b| a.aggregate_id == b.aggregate_id)
            .map(|run| {
                let events = run
                    .iter()
                    .map(|event| {
                        let (_, sequence, decoded) = self.decode(event)?;
                        Ok((sequence, decoded))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Ok(StreamRun {
                    stream_id: run[0].aggregate_id.clone(),
                    events,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut tx = self.pool.begin().await?;
        let applied = rebuild_in(&mut tx, &self.projection, runs).await?;
        tx.commit().await?;
        Ok(applied as u64)
    }
}
