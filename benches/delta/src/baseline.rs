//! The build-cost reference: leakhound's session and named queries over the query bench's
//! store, without deltalake. `cargo build --release --no-default-features --bin baseline`
//! builds it with deltalake out of the dependency graph; its size and build next to the bench
//! binary's are the figures in `docs/store-commit.md`.
//!
//! `baseline [STORE]` (default: the query bench's 100 x 7 store) runs each named query once and
//! prints its row count.

use std::collections::BTreeMap;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or("/var/tmp/leakhound-qbench/p100-d7-s30".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let store = leakhound_ingest::Store::open(&dir)?;
    let now = chrono::Utc::now();
    for name in [
        "goroutines_by_state",
        "goroutines_over_time",
        "leak_profile_stacks",
    ] {
        let q = leakhound_analyze::queries::find(name, None)?;
        let mut p = BTreeMap::new();
        p.insert("from".to_string(), "2026-10-01T00:00:00Z".to_string());
        p.insert("to".to_string(), "2026-10-08T00:00:00Z".to_string());
        let sql = q.render(&p, now)?;
        let rows = rt.block_on(async {
            let ctx = leakhound_analyze::session::session(&store).await?;
            let batches = ctx.sql(&sql).await?.collect().await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                batches.iter().map(|b| b.num_rows()).sum::<usize>(),
            )
        })?;
        println!("{name}: {rows} rows");
    }
    Ok(())
}
