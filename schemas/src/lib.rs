//! leakhound's types without IO: the goroutine model every parser produces, stack ids, and the
//! Arrow schemas of every table in the store.
//!
//! ```text
//!  debug=0 / debug=1 / debug=2 ──parse──▶ GoroutineRecord ──SnapshotBuilder──▶ Snapshot
//!                                                                         │
//!                               tables::Table::{GoroutineCounts, Stacks, GoroutineSamples, IngestLog}
//! ```
//!
//! - [`model`]: frames, normalised stacks and their stable [`model::StackId`], records and
//!   aggregated snapshots.
//! - [`k8s_names`]: Kubernetes' name rules, checked before a name from outside reaches an API
//!   path, a store key or a file path.
//! - [`kinds`]: the closed sets of names events carry: detectors and leak patterns.
//! - [`time`]: the one parser of durations (`500ms`, `1m30s`, `1w`) and times (RFC 3339, Unix
//!   seconds, `now-2h`) for flags, policies and query parameters.
//! - [`scope`]: who an event, trigger or action is about (a workload or one of its pods), one
//!   type for analyze and actuate.
//! - [`tables`]: the one definition of each table's Arrow schema and partitioning, and the
//!   schema version written into every file.

pub mod events;
pub mod k8s_names;
pub mod kinds;
pub mod model;
pub mod scope;
pub mod tables;
pub mod time;

pub use model::{
    DumpFormat, Frame, GoroutineRecord, ProfileKind, SampleGroup, Snapshot, Stack, StackId,
};
pub use scope::Scope;
pub use tables::{SCHEMA_VERSION, Table};
