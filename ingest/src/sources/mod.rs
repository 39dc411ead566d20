//! Where snapshots come from. One module per source.
//!
//! - [`prometheus`]: saved or fetched `query_range` answers of `go_goroutines` and friends.

pub mod prometheus;
