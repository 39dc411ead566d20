//! Analyze: SQL over the store (DataFusion), named queries; detectors, clustering and reports
//! come on top of these.
//!
//! ```text
//!  store (Parquet, hive partitions) ──ListingTable per table──▶ SessionContext ──▶ SQL / queries/
//! ```
//!
//! - [`session`]: a DataFusion session with every table of the store registered, partition
//!   columns `date` (and `hour`) pruned from the path.
//! - [`queries`]: the named queries of `queries/`, embedded in the binary, with typed parameters.
//! - [`sql`]: scripts split into statements by the SQL tokenizer, statements run, the `status`
//!   report over every table.
//! - [`report`]: a leak cluster as a pprof goroutine profile (`leakhound report`).
//! - [`output`]: record batches as a table, CSV or JSON.

pub mod anomaly;
pub mod backtest;
pub mod engine;
pub mod error;
pub mod levels;
pub mod output;
pub mod queries;
pub mod report;
pub mod rootcause;
pub mod scenarios;
pub mod session;
pub mod sql;

pub use error::{Error, Result};
