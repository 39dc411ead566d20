//! Golden results of the named queries (`queries/NAME.sql` → `queries/NAME.sql.expected`) on a
//! fixture store made from the bundled example captures. Regenerate after a deliberate change
//! with `LEAKHOUND_BLESS=1 cargo test --test it golden`; never edit an `.expected` by hand.

use crate::support::*;

/// Fixed parameters so that results do not depend on the clock: the examples were captured on
/// 2026-11-28 between 04:36:45Z and 04:39:30Z (recapturing them means re-blessing).
pub(crate) const PARAMS: &[(&str, &[&str])] = &[
    (
        "goroutines_by_state",
        &["from=2026-11-28T04:00:00Z", "to=2026-11-28T05:00:00Z"],
    ),
    (
        "goroutines_over_time",
        &["from=2026-11-28T04:00:00Z", "to=2026-11-28T05:00:00Z"],
    ),
    (
        "stack_growth",
        &[
            "base_from=2026-11-28T04:37:55Z",
            "base_to=2026-11-28T04:38:08Z",
            "from=2026-11-28T04:38:18Z",
            "to=2026-11-28T04:38:30Z",
        ],
    ),
    (
        "oldest_blocked",
        &[
            "from=2026-11-28T04:00:00Z",
            "to=2026-11-28T05:00:00Z",
            "limit=10",
        ],
    ),
    (
        "leak_profile_stacks",
        &["from=2026-11-28T00:00:00Z", "to=2026-11-29T00:00:00Z"],
    ),
    (
        "rule_baseline",
        &["from=2026-11-28T04:00:00Z", "to=2026-11-28T05:00:00Z"],
    ),
    (
        "rule_growth",
        &[
            "from=2026-11-28T04:00:00Z",
            "to=2026-11-28T05:00:00Z",
            "min_per_s=0.01",
        ],
    ),
];

#[test]
fn golden_named_queries() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    ok(&[
        "backfill",
        "--store",
        store,
        data().join("examples").to_str().unwrap(),
    ]);
    let bless = std::env::var_os("LEAKHOUND_BLESS").is_some();
    let listed = ok(&["query", "--list"]);
    let mut failures = Vec::new();
    for (name, params) in PARAMS {
        assert!(
            listed.contains(&format!("{name}:")),
            "{name} not listed:\n{listed}"
        );
        let mut args = vec!["query", name, "--store", store, "--format", "csv"];
        for p in *params {
            args.push("-p");
            args.push(p);
        }
        let got = ok(&args);
        let path = repo().join(format!("queries/{name}.sql.expected"));
        if bless {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!(
                "{} is missing: run LEAKHOUND_BLESS=1 cargo test --test it golden",
                path.display()
            )
        });
        if got != want {
            failures.push(format!("--- {name}: expected\n{want}\n--- got\n{got}"));
        }
        // Every golden result says something: no query is checked against an empty answer.
        assert!(
            got.lines().count() > 1,
            "{name} returned no rows on the fixture store"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every shipped query has golden parameters here.
    for (name, _) in leakhound_analyze::queries::BUILTIN {
        assert!(
            PARAMS.iter().any(|(n, _)| n == name),
            "{name} has no golden test"
        );
    }
}
