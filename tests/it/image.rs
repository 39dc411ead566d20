//! The container image: `tests/docker/build-stage` runs deploy/Dockerfile's build stage without
//! Docker (the same RUN command and ENV/ARG environment, from a copy of the build context that
//! .dockerignore selects) and checks the file the last stage copies: an executable leakhound
//! binary that lists its embedded queries from an empty folder.
//!
//! Here it builds the **dev** profile (`--build-arg PROFILE=dev`), with the dependencies this
//! test run already compiled seeded into the stage's fresh target folder (`--seed-target`, as a
//! BuildKit cache mount would hold them): a release build from nothing takes ~40 min on 2 cores,
//! beyond CI's budget. What differs from the image build is the profile and the warm
//! dependencies; the command, the environment, the context and the copied path are the image's.
//! Measured here (2 cores shared with other builds): 110 s, the five workspace crates compiled
//! and the seeded dependencies reused; the build is cut at 20 min (a seed that did not match
//! would mean a cold build). `LEAKHOUND_SKIP_IMAGE_BUILD=1` skips the build; the script's own
//! failures are checked regardless.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, ensure};

use crate::support::{repo, write};

fn script() -> PathBuf {
    repo().join("tests/docker/build-stage")
}

/// The target folder this test binary was built in (`<target>/debug/deps/it-HASH`).
fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .ancestors()
        .nth(3)
        .context("the test binary is not under <target>/<profile>/deps")?;
    ensure!(
        dir.join("debug/deps").is_dir(),
        "{} is not a target folder",
        dir.display()
    );
    Ok(dir.to_path_buf())
}

#[test]
fn image_build_stage_produces_the_binary_the_image_copies() -> Result<()> {
    if std::env::var("LEAKHOUND_SKIP_IMAGE_BUILD").is_ok_and(|v| !v.is_empty()) {
        eprintln!(
            "LEAKHOUND_SKIP_IMAGE_BUILD is set: skipping the build of deploy/Dockerfile's stage"
        );
        return Ok(());
    }
    let started = std::time::Instant::now();
    let out = Command::new(script())
        .args([
            "--build-arg",
            "PROFILE=dev",
            "--timeout",
            "1200",
            "--seed-target",
        ])
        .arg(target_dir()?)
        .output()
        .context("running tests/docker/build-stage")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success() && stdout.lines().any(|l| l == "ok"),
        "build-stage: {}\n{stdout}\n{stderr}",
        out.status
    );
    ensure!(stdout.contains("version: leakhound "), "{stdout}");
    eprintln!(
        "deploy/Dockerfile build stage (dev profile, seeded dependencies): {:.0} s\n{stderr}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The script fails when the last stage copies a file the build stage did not make.
#[test]
fn image_build_stage_fails_when_the_copied_file_is_missing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dockerfile = dir.path().join("Dockerfile");
    write(
        &dockerfile,
        "FROM rust:1.95-bookworm AS build\nWORKDIR /src\nENV CARGO_TARGET_DIR=/src/target\nRUN true\n\n\
         FROM gcr.io/distroless/cc-debian12:nonroot\nCOPY --from=build /src/target/release/leakhound /usr/local/bin/leakhound\nUSER 65532:65532\n",
    );
    let out = Command::new(script())
        .arg("--dockerfile")
        .arg(&dockerfile)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && stderr.contains("is not an executable file"),
        "{}: {stderr}",
        out.status
    );
    // A RUN line that spells an absolute path could write outside the mapped root: refused.
    write(
        &dockerfile,
        "FROM rust:1.95-bookworm AS build\nWORKDIR /src\nRUN cp /etc/hostname leakhound\n\n\
         FROM gcr.io/distroless/cc-debian12:nonroot\nCOPY --from=build /src/leakhound /usr/local/bin/leakhound\nUSER 65532:65532\n",
    );
    let out = Command::new(script())
        .arg("--dockerfile")
        .arg(&dockerfile)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && stderr.contains("absolute path"),
        "{}: {stderr}",
        out.status
    );
    Ok(())
}
