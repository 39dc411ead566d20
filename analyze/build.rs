//! `LEAKHOUND_ANALYZE_SOURCE_HASH`: a hash of the sources that decide what a finding is (this
//! crate's `src/` and the named queries), so that a live step never reuses findings a different
//! build computed (`engine::reuse`), version bump or not. Hand-written: a walk and a hash of
//! file contents in order is all it takes.

use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p
            .extension()
            .is_some_and(|x| x == "rs" || x == "sql" || x == "csv")
        {
            out.push(p);
        }
    }
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let dirs = [root.join("src"), root.join("../queries")];
    let mut all = Vec::new();
    for d in &dirs {
        println!("cargo:rerun-if-changed={}", d.display());
        files(d, &mut all);
    }
    all.sort();
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for f in &all {
        // Paths relative to the crate, so that the hash does not depend on the checkout's place.
        let rel = f.strip_prefix(&root).unwrap_or(f);
        h.update(rel.to_string_lossy().as_bytes());
        h.update(&std::fs::read(f).unwrap_or_default());
    }
    println!(
        "cargo:rustc-env=LEAKHOUND_ANALYZE_SOURCE_HASH={:016x}",
        h.digest()
    );
}
