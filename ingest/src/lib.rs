//! Ingest: goroutine-profile parsers, sources, and the Parquet store writer.
//!
//! ```text
//!  archived files ──backfill──┐
//!  live targets ───scrape─────┼─▶ parse ─▶ Snapshot ─▶ writer::Batch ─commit─▶ store (Parquet)
//!  Prometheus JSON ───────────┘                                          ▲
//!                                              visibility (compaction) ──┘  compact, retention
//! ```
//!
//! - [`parse`]: streaming parsers for debug=2 text (and crash output), debug=1 text and
//!   debug=0 protobuf, with format detection from content.
//! - [`store`]: the store URL (local directory or S3), partitions, atomic Parquet writes.
//! - [`commit`]: the commit log: a batch's files and ingest-log rows become visible together,
//!   concurrent writers claim sequence numbers with conditional puts.
//! - [`visibility`]: which files readers see (committed ones, minus replaced ones).
//! - [`fault`]: `LEAKHOUND_FAULT`, crashes at chosen points for tests and the fault bench.
//! - [`rows`]: row types of each table and their Arrow batches.
//! - [`writer`]: batches of rows into files, stacks deduplicated per partition.
//! - [`context`]: the container context the Go agent sends (a header, or pushed fields), checked
//!   as hostile input.
//! - [`content_hash`]: the one content hash of an input (backfill and live ingest), which the
//!   ingest log de-duplicates on.
//! - [`backfill`]: walking files and archives, identity from path patterns, the ingest log.
//! - [`compact`]: merging small files and retention.
//! - [`residence`]: first-seen tracking of goroutine ids, ages per sample group.
//! - [`push`]: snapshots pushed by the Go agent (through `serve`) landed exactly once, with the
//!   same writer, rows and id tracking as a scrape.
//! - [`pathpattern`]: `{namespace}/{pod}/{timestamp}` path patterns.
//! - [`scrape`]: live ingest passes over targets (metrics, debug=1/2, leak profile), bodies
//!   streamed into the parsers within one memory budget, rows committed in chunks; a run of
//!   passes and its exit rule (`scrape::driver`).
//! - [`summary`]: a dump summarised for a person (`leakhound inspect`): stacks grouped with
//!   counts, wait ranges, labels and creation sites.
//! - [`sources`]: non-dump sources (Prometheus query_range).
//! - [`error`]: the crate's error type, and `error::chain` (an error with its causes).

pub mod backfill;
pub mod commit;
pub mod compact;
pub mod content_hash;
pub mod context;
pub mod error;
pub mod fault;
pub mod parse;
pub mod pathpattern;
pub mod push;
pub mod residence;
pub mod rows;
pub mod scrape;
pub mod sources;
pub mod store;
pub mod summary;
pub mod visibility;
pub mod writer;

pub use error::{Error, Result};
pub use store::Store;
