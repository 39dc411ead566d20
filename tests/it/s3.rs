//! The store on S3, through the same object_store code path as a local directory, against a
//! real S3-compatible server (moto_server, installed by .ci/run into a venv).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::*;

pub(crate) struct Moto {
    child: Child,
    pub(crate) endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_binary() -> String {
    std::env::var("LEAKHOUND_MOTO_SERVER")
        .unwrap_or_else(|_| "/var/tmp/leakhound-venv/bin/moto_server".to_string())
}

impl Moto {
    /// The environment a `leakhound` process needs to use this server as its S3.
    pub(crate) fn client_env(&self) -> [(&'static str, &str); 5] {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
        ]
    }
}

pub(crate) fn start_moto() -> Moto {
    let bin = moto_binary();
    assert!(
        std::path::Path::new(&bin).exists(),
        "moto_server not found at {bin}: run .ci/run once (it installs it into /var/tmp/leakhound-venv) or set LEAKHOUND_MOTO_SERVER"
    );
    let port = free_port();
    let child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let endpoint = format!("http://127.0.0.1:{port}");
    let moto = Moto { child, endpoint };
    wait_until("moto_server to listen", Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    moto
}

pub(crate) fn create_bucket(endpoint: &str, bucket: &str) {
    // A plain unsigned PUT creates a bucket on moto.
    let out = Command::new("curl")
        .args(["-sf", "-X", "PUT", &format!("{endpoint}/{bucket}")])
        .output()
        .expect("curl");
    assert!(out.status.success(), "create bucket: {out:?}");
}

#[test]
fn backfill_query_compact_on_s3() {
    let moto = start_moto();
    create_bucket(&moto.endpoint, "leakhound");
    let env = moto.client_env();
    let store = "s3://leakhound/prod-store";
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    write(
        &a,
        query_range_json("prod", "api-1", 1_795_839_000, 60, &[5, 6, 7]),
    );
    write(
        &b,
        query_range_json("prod", "api-2", 1_795_839_000, 60, &[8, 9]),
    );
    ok_env(&["backfill", "--store", store, a.to_str().unwrap()], &env);
    ok_env(&["backfill", "--store", store, b.to_str().unwrap()], &env);
    let n = |env: &[(&str, &str)]| {
        sql_i64_env(
            store,
            "SELECT SUM(goroutines) AS n FROM goroutine_counts",
            env,
        )
    };
    assert_eq!(n(&env), 5 + 6 + 7 + 8 + 9);
    // Partition pruning on date works on S3 too.
    let rows = sql_json_env(
        store,
        "SELECT pod, COUNT(*) AS c FROM goroutine_counts WHERE date = '2026-11-28' GROUP BY pod ORDER BY pod",
        &env,
    );
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["c"], 3);
    // Re-running adds nothing.
    let out = ok_env(
        &[
            "backfill",
            "--store",
            store,
            a.to_str().unwrap(),
            b.to_str().unwrap(),
        ],
        &env,
    );
    assert!(out.contains("2 already imported"), "{out}");
    assert_eq!(n(&env), 35);
    // Compaction commits through the same commit log on S3.
    let out = ok_env(&["compact", "--store", store], &env);
    assert!(out.contains("2 partitions compacted"), "{out}");
    assert_eq!(n(&env), 35);
    // The objects really are in the bucket, under the prefix, hive-partitioned.
    let listing = Command::new("curl")
        .args([
            "-sf",
            &format!("{}/leakhound?list-type=2&prefix=prod-store/", moto.endpoint),
        ])
        .output()
        .expect("curl");
    let xml = String::from_utf8_lossy(&listing.stdout);
    assert!(
        xml.contains("prod-store/goroutine_counts/date=2026-11-28/"),
        "{xml}"
    );
    assert!(xml.contains("prod-store/_commits/"), "{xml}");
}

/// Two backfills of the same 1,000 files at once into one S3 store, then two compactions at
/// once: each row once. The commit record's sequence number is claimed with a conditional put
/// (`If-None-Match: *`), which moto_server implements as S3 does.
#[test]
fn two_writers_at_once_on_s3_land_each_row_once() {
    let moto = start_moto();
    create_bucket(&moto.endpoint, "leakhound");
    let env = moto.client_env();
    let dir = tempfile::tempdir().unwrap();
    crate::store_trust::two_writers_at_once("s3://leakhound/concurrent", &env, dir.path());
}
