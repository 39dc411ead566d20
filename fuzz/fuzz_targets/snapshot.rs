#![no_main]
//! Any bytes through detection, gunzip and whichever parser detection picks, as the backfill
//! calls it; also gzip'd, so the decompressed bytes are fuzzed through the same path.

use std::io::Write;

use leakhound_fuzz::parse::{ParseOptions, detect, parse_snapshot_with};
use leakhound_fuzz::small_opts;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = detect(data);
    for opts in [ParseOptions::default(), small_opts()] {
        if let Ok(s) = parse_snapshot_with(data, "fuzz", &opts)
            && let Some(declared) = s.declared_total
        {
            assert_eq!(
                declared,
                s.total(),
                "a debug=1 snapshot adds up to its header"
            );
        }
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    if gz.write_all(data).is_ok()
        && let Ok(z) = gz.finish()
    {
        let _ = parse_snapshot_with(&z[..], "fuzz.gz", &small_opts());
    }
});
