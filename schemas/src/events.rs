//! Leak events: what analyze emits and actuate consumes.
//!
//! [`LeakEvent`] is a public interface: it is the object of each line of
//! `leakhound analyze --format jsonl` (documented in `docs/leak-events.md`) and a row of the
//! `leak_events` table. Fields are only ever added, never renamed or retyped, without a bump of
//! [`EVENT_SCHEMA`].

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{Float64Type, Int64Type, TimestampMicrosecondType};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Event times: UTC, RFC 3339 on the wire (`2026-11-28T10:05:00Z`).
pub type Time = DateTime<Utc>;

use crate::tables::Table;

/// The version of the JSON event object, carried as `schema` on every line.
/// v2: `clusters[].stack_ids` are strings (the decimal spelling of [`crate::StackId`]), not
/// numbers that JSON readers round.
pub const EVENT_SCHEMA: &str = "leakhound.event/v2";

/// Leak level, from the seed: L1 transient jitter (record only), L2 periodic or recurring,
/// L3 sustained leak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Level {
    L1,
    L2,
    L3,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::L1 => "L1",
            Level::L2 => "L2",
            Level::L3 => "L3",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "L1" => Some(Level::L1),
            "L2" => Some(Level::L2),
            "L3" => Some(Level::L3),
            _ => None,
        }
    }
}

/// One root-cause cluster of an event, as carried inside the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterSummary {
    pub id: String,
    /// chan_send | chan_receive | select | http_body | context | mutex | rwmutex | waitgroup |
    /// cond | sleep_timer | io_wait | other
    pub pattern: String,
    /// `function file:line` of the blocking site.
    pub top_frame: String,
    pub goroutines_now: i64,
    pub goroutines_baseline: i64,
    /// The runtime's `goroutineleak` profile reported this cluster's stacks.
    #[serde(default)]
    pub confirmed: bool,
    /// The `stacks.stack_id`s of the cluster; strings in JSON (`"-4021929379218146519"`),
    /// numbers of v1 events read too.
    #[serde(default, with = "stack_ids_as_strings")]
    pub stack_ids: Vec<i64>,
}

/// Stack ids in JSON: written as decimal strings, read from strings or (v1) numbers.
mod stack_ids_as_strings {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ids: &[i64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(ids.iter().map(|id| id.to_string()))
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(i64),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
        Vec::<Id>::deserialize(d)?
            .into_iter()
            .map(|id| match id {
                Id::Number(n) => Ok(n),
                Id::Text(t) => t
                    .parse::<i64>()
                    .map_err(|e| D::Error::custom(format!("stack id {t:?}: {e}"))),
            })
            .collect()
    }
}

/// One leak event. Times are RFC 3339 in JSON and µs timestamps in the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeakEvent {
    pub schema: String,
    pub event_id: String,
    pub cluster: Option<String>,
    pub namespace: String,
    pub workload_kind: Option<String>,
    pub workload: Option<String>,
    /// Null for a workload-wide event.
    pub pod: Option<String>,
    pub level: Level,
    /// baseline_rule | growth_rule | stl_iforest | lives | siblings | daily_trend
    pub detector: String,
    pub detected_at: Time,
    pub onset: Time,
    pub window_start: Time,
    pub window_end: Time,
    pub score: f64,
    pub growth_per_s: f64,
    pub residence_p99_s: Option<f64>,
    pub alive_over_5m_share: Option<f64>,
    pub goroutines: i64,
    pub baseline_goroutines: Option<f64>,
    pub sla_penalty: f64,
    pub reason: String,
    pub clusters: Vec<ClusterSummary>,
    /// The container's memory at detection, bytes (cgroup `memory.current`, else the process's
    /// RSS), from the Go agent's context on the count rows; null without it. For a workload,
    /// that of the pod nearest its limit.
    #[serde(default)]
    pub memory_bytes: Option<i64>,
    /// The container's memory limit (cgroup `memory.max`); null when unknown or unlimited.
    #[serde(default)]
    pub memory_limit_bytes: Option<i64>,
    /// Seconds until `memory_bytes` reaches the limit at the slope of memory over the
    /// episode's window; null without a limit or without growth.
    #[serde(default)]
    pub time_to_limit_s: Option<f64>,
}

fn ts(values: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(values).with_timezone("UTC"))
}

fn utf8<I: IntoIterator<Item = Option<String>>>(values: I) -> ArrayRef {
    Arc::new(StringArray::from_iter(values))
}

/// Events as a `leak_events` batch.
pub fn events_to_batch(events: &[LeakEvent]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let e = events;
    let s = |f: fn(&LeakEvent) -> Option<String>| utf8(e.iter().map(f));
    let f64s = |f: fn(&LeakEvent) -> Option<f64>| -> ArrayRef {
        Arc::new(Float64Array::from(e.iter().map(f).collect::<Vec<_>>()))
    };
    let columns: Vec<ArrayRef> = vec![
        s(|x| Some(x.event_id.clone())),
        ts(e.iter().map(|x| x.detected_at.timestamp_micros()).collect()),
        s(|x| x.cluster.clone()),
        s(|x| Some(x.namespace.clone())),
        s(|x| x.workload_kind.clone()),
        s(|x| x.workload.clone()),
        s(|x| x.pod.clone()),
        s(|x| Some(x.level.as_str().to_string())),
        s(|x| Some(x.detector.clone())),
        ts(e.iter().map(|x| x.onset.timestamp_micros()).collect()),
        ts(e.iter()
            .map(|x| x.window_start.timestamp_micros())
            .collect()),
        ts(e.iter().map(|x| x.window_end.timestamp_micros()).collect()),
        f64s(|x| Some(x.score)),
        f64s(|x| Some(x.growth_per_s)),
        f64s(|x| x.residence_p99_s),
        f64s(|x| x.alive_over_5m_share),
        Arc::new(Int64Array::from(
            e.iter().map(|x| x.goroutines).collect::<Vec<_>>(),
        )),
        f64s(|x| x.baseline_goroutines),
        f64s(|x| Some(x.sla_penalty)),
        s(|x| Some(serde_json::to_string(&x.clusters).unwrap_or_else(|_| "[]".into()))),
        s(|x| Some(x.reason.clone())),
        Arc::new(Int64Array::from(
            e.iter().map(|x| x.memory_bytes).collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(
            e.iter().map(|x| x.memory_limit_bytes).collect::<Vec<_>>(),
        )),
        f64s(|x| x.time_to_limit_s),
    ];
    RecordBatch::try_new(Table::LeakEvents.schema(), columns)
}

/// Read events back from `leak_events` batches (for actuate). Rows that cannot be read are
/// returned as errors naming the row, the rest as events.
pub fn events_from_batch(b: &RecordBatch) -> Vec<Result<LeakEvent, String>> {
    let col = |name: &str| b.column_by_name(name);
    let str_at = |name: &str, i: usize| -> Option<String> {
        let c = col(name)?;
        let c = c.as_string_opt::<i32>()?;
        (!c.is_null(i)).then(|| c.value(i).to_string())
    };
    let ts_at = |name: &str, i: usize| -> Option<Time> {
        let c = col(name)?;
        let c = c.as_primitive_opt::<TimestampMicrosecondType>()?;
        (!c.is_null(i))
            .then(|| DateTime::from_timestamp_micros(c.value(i)))
            .flatten()
    };
    let f64_at = |name: &str, i: usize| -> Option<f64> {
        let c = col(name)?;
        let c = c.as_primitive_opt::<Float64Type>()?;
        (!c.is_null(i)).then(|| c.value(i))
    };
    let i64_at = |name: &str, i: usize| -> Option<i64> {
        let c = col(name)?;
        let c = c.as_primitive_opt::<Int64Type>()?;
        (!c.is_null(i)).then(|| c.value(i))
    };
    (0..b.num_rows())
        .map(|i| {
            let need = |what: &str| format!("leak_events row {i}: {what} missing or mistyped");
            let clusters_json = str_at("clusters", i).unwrap_or_else(|| "[]".into());
            Ok(LeakEvent {
                schema: EVENT_SCHEMA.to_string(),
                event_id: str_at("event_id", i).ok_or_else(|| need("event_id"))?,
                cluster: str_at("cluster", i),
                namespace: str_at("namespace", i).ok_or_else(|| need("namespace"))?,
                workload_kind: str_at("workload_kind", i),
                workload: str_at("workload", i),
                pod: str_at("pod", i),
                level: str_at("level", i)
                    .as_deref()
                    .and_then(Level::parse)
                    .ok_or_else(|| need("level"))?,
                detector: str_at("detector", i).ok_or_else(|| need("detector"))?,
                detected_at: ts_at("detected_at", i).ok_or_else(|| need("detected_at"))?,
                onset: ts_at("onset", i).ok_or_else(|| need("onset"))?,
                window_start: ts_at("window_start", i).ok_or_else(|| need("window_start"))?,
                window_end: ts_at("window_end", i).ok_or_else(|| need("window_end"))?,
                score: f64_at("score", i).unwrap_or(0.0),
                growth_per_s: f64_at("growth_per_s", i).unwrap_or(0.0),
                residence_p99_s: f64_at("residence_p99_s", i),
                alive_over_5m_share: f64_at("alive_over_5m_share", i),
                goroutines: i64_at("goroutines", i).unwrap_or(0),
                baseline_goroutines: f64_at("baseline_goroutines", i),
                sla_penalty: f64_at("sla_penalty", i).unwrap_or(0.0),
                reason: str_at("reason", i).unwrap_or_default(),
                clusters: serde_json::from_str(&clusters_json)
                    .map_err(|e| format!("leak_events row {i}: clusters: {e}"))?,
                // Absent in files written before the columns: null.
                memory_bytes: i64_at("memory_bytes", i),
                memory_limit_bytes: i64_at("memory_limit_bytes", i),
                time_to_limit_s: f64_at("time_to_limit_s", i),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> LeakEvent {
        LeakEvent {
            schema: EVENT_SCHEMA.into(),
            event_id: "e1".into(),
            cluster: None,
            namespace: "payments".into(),
            workload_kind: Some("Deployment".into()),
            workload: Some("checkout".into()),
            pod: Some("checkout-1".into()),
            level: Level::L3,
            detector: "growth_rule".into(),
            detected_at: "2026-11-28T10:05:00Z".parse().unwrap(),
            onset: "2026-11-28T09:50:00Z".parse().unwrap(),
            window_start: "2026-11-28T09:05:00Z".parse().unwrap(),
            window_end: "2026-11-28T10:05:00Z".parse().unwrap(),
            score: 0.9,
            growth_per_s: 4.0,
            residence_p99_s: Some(600.0),
            alive_over_5m_share: None,
            goroutines: 1234,
            baseline_goroutines: Some(100.0),
            sla_penalty: 15.0,
            reason: "slope".into(),
            clusters: vec![ClusterSummary {
                id: "c1".into(),
                pattern: "chan_send".into(),
                top_frame: "main.leak main.go:10".into(),
                goroutines_now: 1000,
                goroutines_baseline: 0,
                confirmed: true,
                stack_ids: vec![1, 2],
            }],
            memory_bytes: Some(200 << 20),
            memory_limit_bytes: Some(256 << 20),
            time_to_limit_s: Some(1_200.0),
        }
    }

    #[test]
    fn stack_ids_travel_as_strings_and_v1_numbers_still_read() {
        let mut e = event();
        e.clusters[0].stack_ids = vec![-4_021_929_379_218_146_519, 2];
        let json = serde_json::to_string(&e).unwrap();
        assert!(
            json.contains(r#""stack_ids":["-4021929379218146519","2"]"#),
            "{json}"
        );
        let back: LeakEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
        let v1 = json.replace(
            r#"["-4021929379218146519","2"]"#,
            "[-4021929379218146519,2]",
        );
        let old: LeakEvent = serde_json::from_str(&v1).unwrap();
        assert_eq!(old.clusters[0].stack_ids, e.clusters[0].stack_ids);
    }

    /// Events of files and lines written before the memory fields read them as null.
    #[test]
    fn events_without_the_memory_fields_read_as_null() {
        let e = event();
        let mut v = serde_json::to_value(&e).unwrap();
        let o = v.as_object_mut().unwrap();
        for k in ["memory_bytes", "memory_limit_bytes", "time_to_limit_s"] {
            assert!(o.remove(k).is_some(), "{k}");
        }
        let old: LeakEvent = serde_json::from_value(v).unwrap();
        assert_eq!(
            (
                old.memory_bytes,
                old.memory_limit_bytes,
                old.time_to_limit_s
            ),
            (None, None, None)
        );
        // A batch of the table as it was (the last three columns missing).
        let b = events_to_batch(std::slice::from_ref(&e)).unwrap();
        let n = b.num_columns();
        let old = b.project(&(0..n - 3).collect::<Vec<_>>()).unwrap();
        let back = events_from_batch(&old);
        let back = back[0].as_ref().unwrap();
        assert_eq!(back.memory_bytes, None);
        assert_eq!(back.time_to_limit_s, None);
        assert_eq!(back.goroutines, e.goroutines);
    }

    #[test]
    fn events_round_trip_through_a_batch_and_json() {
        let e = event();
        let b = events_to_batch(std::slice::from_ref(&e)).unwrap();
        let back = events_from_batch(&b);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].as_ref().unwrap(), &e);
        let json = serde_json::to_string(&e).unwrap();
        assert!(
            json.contains("\"detected_at\":\"2026-11-28T10:05:00Z\""),
            "{json}"
        );
        assert!(json.contains("\"level\":\"L3\""), "{json}");
        let parsed: LeakEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed, e);
    }
}
