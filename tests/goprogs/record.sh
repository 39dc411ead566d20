#!/usr/bin/env bash
# Record real go_goroutines time series of leaky for the analyze scenario suite
# (analyze/src/scenarios.rs, kinds `recorded_*`): one sample every $STEP seconds
# from /metrics (client_golang's go_goroutines), written as CSV
# (offset_s,goroutines) with a `# ` header naming the run and, for a leaking run,
# the leak's onset offset. The suite replays each sample as one minute.
#
# usage: tests/goprogs/record.sh [OUT_DIR]   (default tests/data/recordings)
#   env: RECORD_SAMPLES (240), RECORD_STEP (0.5)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${1:-$HERE/../data/recordings}
mkdir -p "$OUT"
SAMPLES=${RECORD_SAMPLES:-240}
STEP=${RECORD_STEP:-0.5}
export GOCACHE=${GOCACHE:-/var/tmp/leakhound-gocache}
export GOMODCACHE=${GOMODCACHE:-/var/tmp/leakhound-gomodcache}
BIN=/var/tmp/leakhound-leaky-build/leaky-record
(cd "$HERE" && go build -o "$BIN" ./cmd/leaky)

PIDS=()
trap 'for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done' EXIT

start() { # args → sets URL
	local log
	log=$(mktemp)
	"$BIN" "$@" >"$log" 2>/dev/null &
	PIDS+=($!)
	for _ in $(seq 100); do
		URL=$(sed -n 's/^listening on //p' "$log")
		[ -n "$URL" ] && return 0
		sleep 0.05
	done
	echo "leaky did not start" >&2
	exit 1
}

goroutines() { curl -sf "$URL/metrics" | awk '$1 == "go_goroutines" { print $2 }'; }

# record NAME ONSET_SAMPLE(-1 = no leak) ACTION...: at each sample, run the action for that
# sample index (a function), then read go_goroutines.
record() {
	local name=$1 onset=$2 action=$3 file="$OUT/$1.csv"
	{
		echo "# leaky recording $name: one sample every ${STEP}s, replayed as one minute"
		[ "$onset" -ge 0 ] && echo "# leak_onset_sample $onset"
		echo "sample,goroutines"
	} >"$file"
	for i in $(seq 0 $((SAMPLES - 1))); do
		"$action" "$i"
		echo "$i,$(goroutines)" >>"$file"
		sleep "$STEP"
	done
	echo "recorded $file"
}

# Traffic with bursts of benign goroutines (every 20 samples, 200 for 3 s), and from sample
# 80 on a leak of 3 unclosed HTTP bodies (12 goroutines) and 4 blocked senders per sample.
leak_with_bursts() {
	local i=$1
	if [ $((i % 20)) -eq 5 ]; then curl -sf -X POST "$URL/burst?n=200&for=3s" >/dev/null; fi
	if [ "$i" -ge 80 ]; then
		curl -sf -X POST "$URL/leak?pattern=httpbody&n=3" >/dev/null
		curl -sf -X POST "$URL/leak?pattern=chansend&n=4" >/dev/null
	fi
}
start
record leaky-leak-with-bursts 80 leak_with_bursts

# The same traffic and bursts, no leak.
bursts_only() {
	local i=$1
	if [ $((i % 20)) -eq 5 ]; then curl -sf -X POST "$URL/burst?n=200&for=3s" >/dev/null; fi
	return 0
}
start
record leaky-bursts-only -1 bursts_only
