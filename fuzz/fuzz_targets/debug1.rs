#![no_main]
//! Any bytes through the debug=1 parser (with a valid header in front half of the time).

use leakhound_fuzz::parse::{Debug1Parser, ParseOptions};
use leakhound_fuzz::small_opts;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let with_header = [b"goroutine profile: total 3\n".as_slice(), data].concat();
    for input in [data, &with_header[..]] {
        for opts in [ParseOptions::default(), small_opts()] {
            let Ok(p) = Debug1Parser::new(input, &opts) else {
                continue;
            };
            let declared = p.declared_total();
            let mut sum = 0u64;
            let mut ok = true;
            for r in p {
                match r {
                    Ok(rec) => {
                        assert!(rec.count <= opts.max_goroutines);
                        sum += rec.count;
                    }
                    Err(_) => {
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                assert_eq!(
                    sum, declared,
                    "a complete parse adds up to the header's total"
                );
            }
        }
    }
});
