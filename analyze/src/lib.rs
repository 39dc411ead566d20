//! Analyze: SQL over the store (DataFusion), the leak detectors, episodes and levels, root-cause
//! clusters and reports.
//!
//! ```text
//!  store (Parquet, hive partitions) ──session: ListingTable per table──▶ SessionContext ──▶ SQL / queries/
//!        │
//!        └─▶ engine::analyze ──detect::REGISTRY──▶ findings ──engine::episodes──▶ levels ──▶ LeakEvent
//!                    │                                                              │
//!                    └─ captures: residence of what grew        rootcause: clusters ┘──▶ engine::sink
//! ```
//!
//! Where things are:
//! - **A detector** goes in [`detect`]: a module implementing [`detect::Detector`], a line in
//!   [`detect::REGISTRY`], a variant of [`detect::DetectorKind`] (in `leakhound-schemas`). The
//!   six today: [`detect::baseline`], [`detect::growth`] (SQL in `queries/`),
//!   [`detect::stl_iforest`] (over [`anomaly`], the STL + Isolation Forest algorithm), and over
//!   the minute series [`detect::lives`] (a workload across its pod lives),
//!   [`detect::siblings`] (one pod diverging from its siblings) and [`detect::daily_trend`]
//!   (very slow leaks, day over day).
//! - [`engine`]: one analysis — evaluation times, the enabled detectors, the daily-pattern check
//!   (`engine::series::recurring_rise`), captures and residence (`engine::captures`), the
//!   episode state machine (`engine::episodes`), clusters and the writes (`engine::sink`).
//! - [`levels`]: L1/L2/L3 from the evidence of a firing, and the SLA penalty.
//! - [`rootcause`]: which stacks grew, clustered by blocking site with a leak pattern.
//! - [`report`]: a cluster as a pprof profile.
//! - [`session`]: a DataFusion session with every table of the store registered, partition
//!   columns `date` (and `hour`) pruned from the path; in this process, or on an Apache Ballista
//!   cluster (`session::Engine`, `--engine ballista://HOST:PORT`).
//! - [`queries`]: the named queries of `queries/`, embedded in the binary, with typed parameters.
//! - [`sql`]: scripts split into statements by the SQL tokenizer, statements run, the `status`
//!   report over every table.
//! - [`report`]: a leak cluster as a pprof goroutine profile (`leakhound report`).
//! - [`output`]: record batches as a table, CSV or JSON.
//! - [`rng`]: the one seeded random stream (SplitMix64).
//! - Test-only, behind the `testkit` feature (the tests, benches and the root crate's `it`
//!   tests enable it; the shipped binary does not): `scenarios` (the labelled synthetic
//!   suite), `backtest` (scoring detectors on it), `fleetgen` (a synthetic fleet store for the
//!   query and cluster benches) and `anomaly::score_batch`/`batch_parts`/
//!   `replay_anchors` (the STL + IF bench and Python reference inputs).

pub mod anomaly;
#[cfg(feature = "testkit")]
pub mod backtest;
pub mod detect;
pub mod engine;
pub mod error;
#[cfg(feature = "testkit")]
pub mod fleetgen;
pub mod html;
pub mod levels;
pub mod output;
pub mod queries;
pub mod report;
pub mod rng;
pub mod rootcause;
#[cfg(feature = "testkit")]
pub mod scenarios;
pub mod session;
pub mod sql;

pub use error::{Error, Result};
