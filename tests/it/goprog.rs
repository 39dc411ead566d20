//! The leaking Go program of `tests/goprogs` (`leaky`), built once per test run with the
//! machine's Go toolchain, started on a kernel-chosen loopback port.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::support::*;

static LEAKY: OnceLock<PathBuf> = OnceLock::new();
static LEAKY_LEAKPROFILE: OnceLock<PathBuf> = OnceLock::new();

/// Build `tests/goprogs/cmd/leaky` (cached by Go's build cache).
pub fn leaky_binary() -> PathBuf {
    LEAKY
        .get_or_init(|| build_leaky("leaky-test", None))
        .clone()
}

/// leaky built with `GOEXPERIMENT=goroutineleakprofile` (Go 1.26): it also serves the runtime's
/// `goroutineleak` profile.
pub fn leaky_leakprofile_binary() -> PathBuf {
    LEAKY_LEAKPROFILE
        .get_or_init(|| build_leaky("leaky-test-leakprofile", Some("goroutineleakprofile")))
        .clone()
}

fn build_leaky(name: &str, experiment: Option<&str>) -> PathBuf {
    go_build("tests/goprogs", "./cmd/leaky", name, experiment)
}

/// `go build -o <CARGO_TARGET_TMPDIR>/<name> <pkg>` in `dir` (relative to the repository), with
/// the machine's Go caches and CGO off (cached by Go's build cache); `experiment`: a
/// `GOEXPERIMENT`. Panics when Go is missing or the build fails.
pub fn go_build(dir: &str, pkg: &str, name: &str, experiment: Option<&str>) -> PathBuf {
    let out_dir = std::env::var("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let bin = out_dir.join(name);
    let gocache = std::env::var("GOCACHE").unwrap_or_else(|_| "/var/tmp/leakhound-gocache".into());
    let gomod =
        std::env::var("GOMODCACHE").unwrap_or_else(|_| "/var/tmp/leakhound-gomodcache".into());
    let mut cmd = Command::new("go");
    cmd.args(["build", "-o", bin.to_str().unwrap(), pkg])
        .current_dir(repo().join(dir))
        .env("GOCACHE", gocache)
        .env("GOMODCACHE", gomod)
        .env("CGO_ENABLED", "0");
    if let Some(x) = experiment {
        cmd.env("GOEXPERIMENT", x);
    }
    let status = cmd.status().expect("run go build (is Go installed?)");
    assert!(status.success(), "go build of {dir} {pkg} ({name}) failed");
    bin
}

pub struct Leaky {
    child: Child,
    pub url: String,
}

impl Drop for Leaky {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Leaky {
    /// Start leaky with `args`; returns once it printed its address.
    pub fn start(args: &[&str]) -> Leaky {
        Leaky::start_bin(leaky_binary(), args)
    }

    /// Start a given leaky build (see [`leaky_leakprofile_binary`]).
    pub fn start_bin(bin: PathBuf, args: &[&str]) -> Leaky {
        let mut child = Command::new(bin)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start leaky");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from leaky: {line:?}"))
            .to_string();
        Leaky { child, url }
    }

    pub fn get(&self, path: &str) -> String {
        let out = Command::new("curl")
            .args(["-sf", &format!("{}{path}", self.url)])
            .output()
            .expect("curl");
        assert!(out.status.success(), "GET {path} failed");
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn leaks(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/leaks")).unwrap()
    }

    /// Wait until every finite leak spec has started.
    pub fn wait_steady(&self) -> serde_json::Value {
        wait_until(
            "leaky to finish starting its leaks",
            Duration::from_secs(30),
            || self.leaks()["steady"] == true,
        );
        self.leaks()
    }
}

static FLEET: OnceLock<PathBuf> = OnceLock::new();

/// Build `tests/goprogs/cmd/fleet` (cached by Go's build cache).
pub fn fleet_binary() -> PathBuf {
    FLEET
        .get_or_init(|| go_build("tests/goprogs", "./cmd/fleet", "fleet-test", None))
        .clone()
}

/// `fleet`: `n` Go targets on loopback (127.1.x.y, a kernel-chosen port each), some of them
/// hostile (`-hostile MODE=N,...`: endless, drip, gzipbomb, headers, badmetrics; their pods are
/// named `hostile-MODE-NNNN`), with a targets file for `leakhound ingest --targets-file`.
pub struct Fleet {
    child: Child,
    _dir: tempfile::TempDir,
    pub targets_file: PathBuf,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Fleet {
    pub fn start(n: usize, hostile: &str) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let targets_file = dir.path().join("targets.json");
        let mut child = Command::new(fleet_binary())
            .args([
                "-n",
                &n.to_string(),
                "-port",
                "0",
                "-hostile",
                hostile,
                "-targets",
                targets_file.to_str().unwrap(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fleet");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("ready "), "fleet said {line:?}");
        Fleet {
            child,
            _dir: dir,
            targets_file,
        }
    }

    pub fn targets(&self) -> &str {
        self.targets_file.to_str().unwrap()
    }
}
