#![no_main]
//! Any bytes through the debug=2 parser: no panic, and the iterator ends after an error.

use leakhound_fuzz::parse::{Debug2Parser, ParseOptions};
use leakhound_fuzz::small_opts;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for opts in [ParseOptions::default(), small_opts()] {
        let mut it = Debug2Parser::new(data, &opts);
        let mut n = 0u64;
        for r in it.by_ref() {
            match r {
                Ok(rec) => {
                    assert_eq!(rec.count, 1);
                    assert_eq!(rec.goroutine_ids.len(), 1);
                    assert!(rec.stack.frames.len() <= opts.max_frames);
                    n += 1;
                }
                Err(_) => break,
            }
        }
        assert!(
            it.next().is_none(),
            "the parser is fused after an error or the end"
        );
        assert!(it.records() >= n);
        assert!(it.bytes_read() <= data.len() as u64);
    }
});
