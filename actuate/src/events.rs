//! `leakhound actuate`: the leak events analyze wrote to the store, acted on in the order they
//! were detected. "New" is decided by the audit log, not by a cursor: an event whose every
//! step is done is a replay and costs nothing; a deferred step is tried again.

use chrono::{DateTime, Utc};
use leakhound_ingest::store::Store;
use leakhound_schemas::events::{LeakEvent, events_from_batch};
use leakhound_schemas::tables::Table;

use crate::engine::Engine;
use crate::error::Result;
use crate::model::{ActionRecord, Outcome, Trigger};

/// The events detected on or after `since` (whole days are read, then filtered), oldest first;
/// rows that cannot be read come back as messages naming the row.
pub async fn read_events(
    store: &Store,
    since: DateTime<Utc>,
) -> Result<(Vec<LeakEvent>, Vec<String>)> {
    let since_date = since.format("%Y-%m-%d").to_string();
    let filter = |d: &str| d >= since_date.as_str();
    let schema = Table::LeakEvents.schema();
    let cols: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let batches = store
        .read_columns(Table::LeakEvents, &cols, Some(&filter))
        .await?;
    let mut events = Vec::new();
    let mut bad = Vec::new();
    for b in &batches {
        for r in events_from_batch(b) {
            match r {
                Ok(e) if e.detected_at >= since => events.push(e),
                Ok(_) => {}
                Err(e) => bad.push(e),
            }
        }
    }
    events.sort_by(|a, b| (a.detected_at, &a.event_id).cmp(&(b.detected_at, &b.event_id)));
    Ok((events, bad))
}

/// What a run did, by outcome.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RunSummary {
    /// Every decision of the run, in order.
    pub decisions: Vec<ActionRecord>,
    pub events: usize,
    pub unreadable: Vec<String>,
    pub replayed: usize,
    pub taken: usize,
    pub dry_run: usize,
    pub skipped: usize,
    pub deferred: usize,
    pub failed: usize,
    pub rows_written: usize,
}

/// Act on every event detected within the policy's `max_trigger_age` (older ones were either
/// handled or are too old to act on), then write the audit rows.
pub async fn run(engine: &mut Engine, store: &Store, now: DateTime<Utc>) -> Result<RunSummary> {
    let age = chrono::Duration::from_std(engine.policy().max_trigger_age)
        .unwrap_or(chrono::Duration::days(1));
    let (events, unreadable) = read_events(store, now - age).await?;
    let mut s = RunSummary {
        events: events.len(),
        unreadable,
        ..Default::default()
    };
    for e in &events {
        let h = engine.handle(&Trigger::from_event(e)).await;
        s.replayed += h.replayed;
        for r in &h.records {
            match r.outcome {
                Outcome::Taken => s.taken += 1,
                Outcome::DryRun => s.dry_run += 1,
                Outcome::Skipped => s.skipped += 1,
                Outcome::Deferred => s.deferred += 1,
                Outcome::Failed => s.failed += 1,
            }
        }
        s.decisions.extend(h.records);
    }
    s.rows_written = engine.flush().await?;
    Ok(s)
}
