//! The parser sources of `leakhound-ingest`, compiled on their own for fuzzing (see
//! Cargo.toml for why they are included by path).

#[path = "../../ingest/src/parse/mod.rs"]
pub mod parse;

use parse::ParseOptions;

/// Small limits, so that the fuzzer reaches the limit paths with small inputs.
pub fn small_opts() -> ParseOptions {
    ParseOptions {
        max_decompressed_bytes: 1 << 20,
        max_line_bytes: 256,
        max_record_bytes: 2048,
        max_frames: 32,
        max_goroutines: 1_000_000,
        threads: 1,
        max_ids_per_group: 3,
    }
}
