//! The audit log: every decision (taken, dry-run, skipped and why, deferred, failed) as a row of
//! the `actions` table, and the index over past rows that idempotency, cooldowns and the
//! eviction budget are decided from.
//!
//! Rows are buffered and written as one Parquet file per [`AuditLog::flush`] (an atomic put),
//! so a run or a burst of webhook deliveries costs one file, not one per decision.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{Int32Type, TimestampMicrosecondType};
use chrono::{DateTime, Utc};
use leakhound_ingest::store::{Partition, Store};
use leakhound_schemas::events::Level;
use leakhound_schemas::tables::Table;

use crate::error::{Error, Result};
use crate::model::{ActionRecord, Outcome, Target, TriggerKind};

/// What the index keeps of a past row.
#[derive(Debug, Clone)]
struct Past {
    action: String,
    outcome: Outcome,
    dry_run: bool,
    retryable: bool,
}

#[derive(Debug)]
pub struct AuditLog {
    store: Store,
    by_key: HashMap<String, Vec<Past>>,
    /// Changes per workload key, for cooldowns: (action, time, dry_run).
    changes: HashMap<String, Vec<(String, DateTime<Utc>, bool)>>,
    /// Evictions (time, dry_run), for the cluster-wide budget.
    evictions: Vec<(DateTime<Utc>, bool)>,
    pending: Vec<ActionRecord>,
    loaded_rows: usize,
}

impl AuditLog {
    /// Load the rows of the `actions` table decided on or after `since`'s date.
    pub async fn load(store: &Store, since: DateTime<Utc>) -> Result<AuditLog> {
        let mut log = AuditLog {
            store: store.clone(),
            by_key: HashMap::new(),
            changes: HashMap::new(),
            evictions: Vec::new(),
            pending: Vec::new(),
            loaded_rows: 0,
        };
        let since_date = since.format("%Y-%m-%d").to_string();
        let filter = |d: &str| d >= since_date.as_str();
        let schema = Table::Actions.schema();
        let cols: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let batches = store
            .read_columns(Table::Actions, &cols, Some(&filter))
            .await?;
        for b in &batches {
            for r in records_from_batch(b) {
                match r {
                    Ok(r) => {
                        log.index(&r);
                        log.loaded_rows += 1;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Skipped an unreadable row of the actions table.")
                    }
                }
            }
        }
        Ok(log)
    }

    pub fn loaded_rows(&self) -> usize {
        self.loaded_rows
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn index(&mut self, r: &ActionRecord) {
        let workload = r.target.workload_key();
        self.by_key
            .entry(r.action_key.clone())
            .or_default()
            .push(Past {
                action: r.action.clone(),
                outcome: r.outcome,
                dry_run: r.dry_run,
                retryable: r.retryable,
            });
        if matches!(r.outcome, Outcome::Taken | Outcome::DryRun) {
            if r.action == "evict" {
                self.evictions.push((r.decided_at, r.dry_run));
            } else if !matches!(r.action.as_str(), "record" | "capture") {
                self.changes.entry(workload).or_default().push((
                    r.action.clone(),
                    r.decided_at,
                    r.dry_run,
                ));
            }
        }
    }

    /// Whether the step behind `key` needs no more work in this mode: it was taken, or it was
    /// decided for good (skipped, failed for a reason that will not change), or — in dry-run —
    /// already dry-run. Deferred and retryable failures are tried again.
    pub fn is_done(&self, key: &str, dry_run: bool) -> bool {
        self.by_key.get(key).is_some_and(|rows| {
            rows.iter().any(|p| match p.outcome {
                Outcome::Taken => true,
                Outcome::DryRun | Outcome::Skipped => p.dry_run == dry_run,
                Outcome::Failed => p.dry_run == dry_run && !p.retryable,
                Outcome::Deferred => false,
            })
        })
    }

    /// The last change of one of `actions` on `workload_key` that counts in this mode (real
    /// changes always; dry-run ones only in dry-run).
    pub fn last_change(
        &self,
        workload_key: &str,
        actions: &[&str],
        dry_run: bool,
    ) -> Option<DateTime<Utc>> {
        self.changes
            .get(workload_key)?
            .iter()
            .filter(|(a, _, d)| actions.contains(&a.as_str()) && (!*d || dry_run))
            .map(|(_, t, _)| *t)
            .max()
    }

    /// Evictions since `t` across the cluster, counted as [`AuditLog::last_change`] does.
    pub fn evictions_since(&self, t: DateTime<Utc>, dry_run: bool) -> usize {
        self.evictions
            .iter()
            .filter(|(at, d)| *at >= t && (!*d || dry_run))
            .count()
    }

    /// The past outcomes of a key, oldest first (for tests and the CLI summary).
    pub fn outcomes(&self, key: &str) -> Vec<(String, Outcome)> {
        self.by_key
            .get(key)
            .map(|v| v.iter().map(|p| (p.action.clone(), p.outcome)).collect())
            .unwrap_or_default()
    }

    /// Record a decision: logged now, indexed now, written at the next flush.
    pub fn push(&mut self, r: ActionRecord) {
        tracing::info!(
            action = %r.action,
            outcome = r.outcome.as_str(),
            dry_run = r.dry_run,
            target = %r.target.display(),
            trigger = r.trigger.as_str(),
            trigger_id = %r.trigger_id,
            level = r.level.map(Level::as_str).unwrap_or("-"),
            http_status = r.http_status.unwrap_or(0),
            reason = %r.reason,
            "Actuation decision."
        );
        self.index(&r);
        self.pending.push(r);
    }

    pub fn pending(&self) -> &[ActionRecord] {
        &self.pending
    }

    /// Write the buffered rows: one file per date partition. Returns the rows written.
    pub async fn flush(&mut self) -> Result<usize> {
        if self.pending.is_empty() {
            return Ok(0);
        }
        let rows = std::mem::take(&mut self.pending);
        let mut by_date: std::collections::BTreeMap<Partition, Vec<ActionRecord>> =
            Default::default();
        for r in rows {
            let p = Partition::for_ts(Table::Actions, r.decided_at.timestamp_micros());
            by_date.entry(p).or_default().push(r);
        }
        let mut parts = Vec::new();
        let mut n = 0;
        for (partition, rows) in &by_date {
            parts.push((Table::Actions, partition.clone(), records_to_batch(rows)?));
            n += rows.len();
        }
        // One commit for the flush: every row visible, or (after a crash) none; the same rows
        // flushed again (a retry after an error) are committed once.
        if let Err(e) = self.store.commit_files("actuate", &parts).await {
            // Keep the rows for the next flush: nothing decided is lost.
            self.pending.extend(by_date.into_values().flatten());
            return Err(e.into());
        }
        Ok(n)
    }
}

fn ts(values: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(values).with_timezone("UTC"))
}

/// Records as an `actions` batch.
pub fn records_to_batch(rows: &[ActionRecord]) -> Result<RecordBatch> {
    let s = |f: &dyn Fn(&ActionRecord) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from_iter(rows.iter().map(f)))
    };
    let columns: Vec<ArrayRef> = vec![
        ts(rows
            .iter()
            .map(|r| r.decided_at.timestamp_micros())
            .collect()),
        s(&|r| Some(r.action_key.clone())),
        s(&|r| Some(r.trigger.as_str().to_string())),
        s(&|r| Some(r.trigger_id.clone())),
        s(&|r| r.target.cluster.clone()),
        s(&|r| Some(r.target.namespace.clone())),
        s(&|r| r.target.workload_kind.clone()),
        s(&|r| r.target.workload.clone()),
        s(&|r| r.target.pod.clone()),
        s(&|r| r.level.map(|l| l.as_str().to_string())),
        s(&|r| Some(r.action.clone())),
        Arc::new(BooleanArray::from(
            rows.iter().map(|r| r.dry_run).collect::<Vec<_>>(),
        )),
        s(&|r| Some(r.outcome.as_str().to_string())),
        s(&|r| Some(r.reason.clone())),
        s(&|r| r.request.clone()),
        Arc::new(Int32Array::from(
            rows.iter().map(|r| r.http_status).collect::<Vec<_>>(),
        )),
        Arc::new(BooleanArray::from(
            rows.iter().map(|r| Some(r.retryable)).collect::<Vec<_>>(),
        )),
    ];
    RecordBatch::try_new(Table::Actions.schema(), columns).map_err(|source| Error::Arrow {
        table: "actions",
        source,
    })
}

/// Rows of an `actions` batch; unreadable rows come back as errors naming the row.
pub fn records_from_batch(b: &RecordBatch) -> Vec<std::result::Result<ActionRecord, String>> {
    let col = |name: &str| b.column_by_name(name);
    let str_at = |name: &str, i: usize| -> Option<String> {
        let c = col(name)?.as_string_opt::<i32>()?;
        (!c.is_null(i)).then(|| c.value(i).to_string())
    };
    let bool_at = |name: &str, i: usize| -> Option<bool> {
        let c = col(name)?.as_boolean_opt()?;
        (!c.is_null(i)).then(|| c.value(i))
    };
    (0..b.num_rows())
        .map(|i| {
            let need = |what: &str| format!("actions row {i}: {what} missing or mistyped");
            let decided_at = col("decided_at")
                .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>().cloned())
                .filter(|c| !c.is_null(i))
                .and_then(|c| DateTime::from_timestamp_micros(c.value(i)))
                .ok_or_else(|| need("decided_at"))?;
            let trigger = match str_at("trigger", i).as_deref() {
                Some("event") => TriggerKind::Event,
                Some("alert") => TriggerKind::Alert,
                _ => return Err(need("trigger")),
            };
            Ok(ActionRecord {
                decided_at,
                action_key: str_at("action_key", i).ok_or_else(|| need("action_key"))?,
                trigger,
                trigger_id: str_at("trigger_id", i).ok_or_else(|| need("trigger_id"))?,
                target: Target {
                    cluster: str_at("cluster", i),
                    namespace: str_at("namespace", i).ok_or_else(|| need("namespace"))?,
                    workload_kind: str_at("workload_kind", i),
                    workload: str_at("workload", i),
                    pod: str_at("pod", i),
                },
                level: str_at("level", i).as_deref().and_then(Level::parse),
                action: str_at("action", i).ok_or_else(|| need("action"))?,
                dry_run: bool_at("dry_run", i).ok_or_else(|| need("dry_run"))?,
                outcome: str_at("outcome", i)
                    .as_deref()
                    .and_then(Outcome::parse)
                    .ok_or_else(|| need("outcome"))?,
                retryable: bool_at("retryable", i).unwrap_or(false),
                reason: str_at("reason", i).unwrap_or_default(),
                request: str_at("request", i),
                http_status: col("http_status")
                    .and_then(|c| c.as_primitive_opt::<Int32Type>().cloned())
                    .filter(|c| !c.is_null(i))
                    .map(|c| c.value(i)),
            })
        })
        .collect()
}
