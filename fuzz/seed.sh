#!/usr/bin/env bash
# Seed each fuzz target's corpus with the real captures (they reach deep into the parsers at
# once, where random bytes take hours). Idempotent.
set -euo pipefail
cd "$(dirname "$0")"
for t in debug2 debug1 proto snapshot snapshot_fast; do mkdir -p "corpus/$t"; done
for f in ../tests/data/captures/*/* ../ingest/src/parse/testdata/*/*; do
  [ -f "$f" ] || continue
  case "$f" in *.json|*.go|*.sh|*.mod) continue;; esac
  name=$(echo "$f" | tr '/' '_' | tr -d '.')
  cp "$f" "corpus/snapshot/$name"
  case "$f" in
    *.pb.gz) zcat "$f" > "corpus/proto/$name" 2>/dev/null || true ;;
    *debug1*) cp "$f" "corpus/debug1/$name" ;;
    *.gz) ;;
    *) cp "$f" "corpus/debug2/$name" ;;
  esac
done
# Small slices of the big files too: libFuzzer works best on short inputs.
for t in debug2 debug1; do
  for f in corpus/$t/*; do
    [ -f "$f" ] || continue
    head -c 2000 "$f" > "$f.head"
    tail -c 2000 "$f" > "$f.tail"
  done
done
# The fast-path differential target starts from the debug=2 inputs.
cp corpus/debug2/* corpus/snapshot_fast/
