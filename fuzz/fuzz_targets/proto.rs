#![no_main]
//! Any bytes as a profile.proto.

use leakhound_fuzz::parse::{ParseOptions, ProtoParser};
use leakhound_fuzz::small_opts;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for opts in [ParseOptions::default(), small_opts()] {
        if let Ok(p) = ProtoParser::from_bytes(data, &opts) {
            for r in p {
                if r.is_err() {
                    break;
                }
            }
        }
    }
});
