#!/usr/bin/env bash
# Regenerates ../gs-go1.26/ from this program with the installed Go (1.26).
# Usage: bash gen.sh   (then: cargo insta test -p leakhound-ingest --accept)
set -euo pipefail
cd "$(dirname "$0")"
out=../gs-go1.26
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
GOEXPERIMENT=goroutineleakprofile GOFLAGS=-mod=mod go build -trimpath -o "$tmp/gs" .
GODEBUG=tracebackancestors=3,tracebacklabels=1 "$tmp/gs" dump "$tmp"
for p in goroutine goroutineleak; do
  mv "$tmp/$p.debug0.txt" "$out/$p.debug0.pb.gz"
  mv "$tmp/$p.debug1.txt" "$out/$p.debug1.txt"
  mv "$tmp/$p.debug2.txt" "$out/$p.debug2.txt"
done
gzip -9 -c "$out/goroutine.debug2.txt" > "$out/goroutine.debug2.txt.gz"
# SIGQUIT under GOTRACEBACK=crash: g0 stacks, register dumps, all threads, ancestors.
GOTRACEBACK=crash GODEBUG=tracebackancestors=2 "$tmp/gs" sigquit > "$out/crash_sigquit.stderr.txt" 2>&1 || true
GOTRACEBACK=all "$tmp/gs" gopanic > "$out/panic_all.stderr.txt" 2>&1 || true
