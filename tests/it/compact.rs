//! Compaction and retention: rows are never lost or duplicated, a reader that started before a
//! compaction keeps reading, a crash midway leaves nothing visible twice.

use std::time::Duration;

use leakhound_ingest::Store;
use leakhound_ingest::compact::{CompactOptions, compact};

use crate::support::*;

const COUNT_SQL: &str = "SELECT COUNT(*) AS n FROM goroutine_counts";

fn three_backfills(dir: &std::path::Path, store: &str) {
    // Same day, three separate runs → three files per partition.
    for (i, pod) in ["a", "b", "c"].iter().enumerate() {
        let f = dir.join(format!("in{i}.json"));
        write(
            &f,
            query_range_json(
                "prod",
                pod,
                1_795_839_000 + i as i64 * 600,
                15,
                &[10, 11, 12, 13],
            ),
        );
        ok(&["backfill", "--store", store, f.to_str().unwrap()]);
    }
}

async fn count(store: &Store, ctx: Option<&datafusion::prelude::SessionContext>) -> i64 {
    let owned;
    let ctx = match ctx {
        Some(c) => c,
        None => {
            owned = leakhound_analyze::session::session(store).await.unwrap();
            &owned
        }
    };
    let b = ctx.sql(COUNT_SQL).await.unwrap().collect().await.unwrap();
    let a = b[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap();
    a.value(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_every_row_once_and_old_readers_work() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store");
    let store_s = store_path.to_str().unwrap().to_string();
    three_backfills(dir.path(), &store_s);
    let store = Store::open(&store_s).unwrap();
    assert_eq!(count(&store, None).await, 12);
    let files_before = store
        .list_files(leakhound_schemas::Table::GoroutineCounts)
        .await
        .unwrap();
    assert_eq!(files_before.len(), 3);

    // A reader that listed the store before compaction.
    let old_reader = leakhound_analyze::session::session(&store).await.unwrap();
    let now = chrono::Utc::now();
    let s = compact(
        &store,
        &CompactOptions {
            now,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(s.partitions_compacted, 2, "{s:?}"); // goroutine_counts + ingest_log
    assert_eq!(s.files_merged, 6);
    // The old reader still reads (replaced files stay during the grace period) ...
    assert_eq!(count(&store, Some(&old_reader)).await, 12);
    // ... and a new one sees the merged file only: same rows, once.
    assert_eq!(count(&store, None).await, 12);
    let visible = store
        .list_files(leakhound_schemas::Table::GoroutineCounts)
        .await
        .unwrap();
    assert_eq!(visible.len(), 1);
    assert!(visible[0].location.as_ref().contains("compact-"));

    // Past the grace period the replaced files go; rows stay.
    let s = compact(
        &store,
        &CompactOptions {
            now: now + chrono::Duration::minutes(11),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(s.replaced_files_deleted, 6, "{s:?}");
    assert_eq!(count(&store, None).await, 12);
    let on_disk = walk_files(&store_path.join("goroutine_counts"));
    assert_eq!(on_disk.len(), 1, "{on_disk:?}");

    // Re-running the same backfill adds nothing after compaction either.
    three_backfills(dir.path(), &store_s);
    assert_eq!(count(&store, None).await, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_before_commit_leaves_an_invisible_orphan_that_is_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store");
    let store_s = store_path.to_str().unwrap().to_string();
    three_backfills(dir.path(), &store_s);
    let store = Store::open(&store_s).unwrap();
    // Simulate a crash between "write merged file" and "commit manifest": copy a data file to
    // a compact-* name without a manifest.
    let files = walk_files(&store_path.join("goroutine_counts"));
    let part = &files[0];
    let orphan = part.with_file_name("compact-deadbeef.parquet");
    std::fs::copy(part, &orphan).unwrap();
    assert_eq!(
        count(&store, None).await,
        12,
        "an uncommitted output must stay invisible"
    );
    let later = chrono::Utc::now() + chrono::Duration::minutes(30);
    let s = compact(
        &store,
        &CompactOptions {
            now: later,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(s.orphans_deleted, 1);
    assert!(!orphan.exists());
    assert_eq!(count(&store, None).await, 12);
}

#[test]
fn retention_drops_old_partitions_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store_s = store.to_str().unwrap();
    let old = dir.path().join("old.json");
    write(
        &old,
        query_range_json("prod", "old", 1_577_836_800, 60, &[1, 2]),
    ); // 2020-01-01
    let new = dir.path().join("new.json");
    let now = chrono::Utc::now().timestamp();
    write(
        &new,
        query_range_json("prod", "new", now - 120, 60, &[3, 4]),
    );
    ok(&[
        "backfill",
        "--store",
        store_s,
        old.to_str().unwrap(),
        new.to_str().unwrap(),
    ]);
    assert_eq!(sql_i64(store_s, COUNT_SQL), 4);
    let out = ok(&["compact", "--store", store_s, "--retain", "30d"]);
    assert!(out.contains("1 partitions dropped"), "{out}");
    let rows = sql_json(store_s, "SELECT pod FROM goroutine_counts ORDER BY pod");
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["pod"] == "new"));
    assert!(walk_files(&store.join("goroutine_counts/date=2020-01-01")).is_empty());
    let _ = Duration::ZERO;
}

pub fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk_files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
