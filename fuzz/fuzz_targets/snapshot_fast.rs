#![no_main]
//! Any bytes through `parse_snapshot_with` (the aggregating fast path on debug=2) and through
//! `parse_snapshot_via_records` (every record built, then folded): the same snapshot, or the
//! same error.

use leakhound_fuzz::parse::{ParseOptions, parse_snapshot_via_records, parse_snapshot_with};
use leakhound_fuzz::small_opts;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for opts in [ParseOptions::default(), small_opts()] {
        let fast = parse_snapshot_with(data, "fast", &opts);
        let full = parse_snapshot_via_records(data, "full", &opts);
        match (fast, full) {
            (Ok(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}")),
            (Err(a), Err(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}")),
            (a, b) => panic!(
                "fast {:?} but full {:?}",
                a.map(|s| s.total()),
                b.map(|s| s.total())
            ),
        }
    }
});
