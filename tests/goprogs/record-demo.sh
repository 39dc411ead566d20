#!/usr/bin/env bash
# Record the demo recording README command 1 backfills and analyzes (tests/data/demo/):
# two real leaky processes standing for the two pods of a workload `shop/orders`, captured
# for 40 minutes with real goroutine ids and real capture times in the file names.
#
#   pod orders-5c8d7f9b4-kq2xv  leaks from minute 6 on: 12 blocked senders (chansend) and,
#                               every other tick, one unclosed HTTP response body
#                               (httpbody, 4 goroutines) per 10 s tick (~1.4 goroutines/s)
#   pod orders-5c8d7f9b4-w7n4m  no leak; restarted (a new process) at minute 20
#   both                        a burst of 60 benign goroutines for 20 s every 2 minutes
#
# Every 10 s: goroutine?debug=1 of each pod (the counts); every 4 minutes: debug=2 (ids,
# wait states, labels); at the end: the leaking pod's goroutineleak profile (debug=1; the
# build has GOEXPERIMENT=goroutineleakprofile), which confirms chansend and not httpbody.
# Files are gzip'd (`backfill` reads them by content); names are
# `<namespace>/<workload>/<pod>/<RFC 3339 capture time, colons as ->.<kind>.txt.gz`.
#
# usage: tests/goprogs/record-demo.sh [OUT_DIR]   (default tests/data/demo)
#   env: DEMO_TICKS (240 ticks of 10 s), DEMO_ONSET_TICK (36), DEMO_RESTART_TICK (120)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${1:-$HERE/../data/demo}
TICKS=${DEMO_TICKS:-240}
ONSET=${DEMO_ONSET_TICK:-36}
RESTART=${DEMO_RESTART_TICK:-120}
export GOCACHE=${GOCACHE:-/var/tmp/leakhound-gocache}
export GOMODCACHE=${GOMODCACHE:-/var/tmp/leakhound-gomodcache}
BUILD=${LEAKY_BUILD_DIR:-/var/tmp/leakhound-leaky-build}
BIN=$BUILD/leaky-demo
mkdir -p "$BUILD"
(cd "$HERE" && GOTOOLCHAIN=local CGO_ENABLED=0 GOEXPERIMENT=goroutineleakprofile go build -trimpath -o "$BIN" ./cmd/leaky)

NS=shop
POD_A=orders-5c8d7f9b4-kq2xv
POD_B=orders-5c8d7f9b4-w7n4m
WL=orders
rm -rf "${OUT:?}/$NS"
mkdir -p "$OUT/$NS/$WL/$POD_A" "$OUT/$NS/$WL/$POD_B"

PIDS=()
trap 'for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done' EXIT

# start NAME → sets PID_NAME and URL_NAME
start() {
	local name=$1 log
	log=$(mktemp)
	"$BIN" >"$log" 2>/dev/null &
	local pid=$!
	PIDS+=("$pid")
	local url=""
	for _ in $(seq 200); do
		url=$(sed -n 's/^listening on //p' "$log")
		[ -n "$url" ] && break
		sleep 0.05
	done
	[ -n "$url" ] || { echo "leaky did not start" >&2; exit 1; }
	printf -v "PID_$name" '%s' "$pid"
	printf -v "URL_$name" '%s' "$url"
}

start A
start B
t0=$(date -u +%s)
echo "recording into $OUT from $(date -u +%FT%TZ), $TICKS ticks of 10 s" >&2
for i in $(seq 0 $((TICKS - 1))); do
	# Tick i happens at t0 + 10 i, whatever the curls took.
	while [ "$(date -u +%s)" -lt $((t0 + 10 * i)) ]; do sleep 0.2; done
	if [ "$i" -eq "$RESTART" ]; then
		kill "$PID_B"
		wait "$PID_B" 2>/dev/null || true
		start B
	fi
	if [ $((i % 12)) -eq 5 ]; then
		curl -sf -X POST "$URL_A/burst?n=60&for=20s" >/dev/null
		curl -sf -X POST "$URL_B/burst?n=60&for=20s" >/dev/null
	fi
	if [ "$i" -ge "$ONSET" ]; then
		curl -sf -X POST "$URL_A/leak?pattern=chansend&n=12" >/dev/null
		if [ $((i % 2)) -eq 0 ]; then
			curl -sf -X POST "$URL_A/leak?pattern=httpbody&n=1" >/dev/null
		fi
	fi
	ts=$(date -u +%Y-%m-%dT%H-%M-%SZ)
	for p in A B; do
		url_var=URL_$p pod_var=POD_$p
		dir=$OUT/$NS/$WL/${!pod_var}
		curl -sf "${!url_var}/debug/pprof/goroutine?debug=1" | gzip -9n >"$dir/$ts.debug1.txt.gz"
		if [ $((i % 24)) -eq 0 ] || [ "$i" -eq $((TICKS - 1)) ]; then
			curl -sf "${!url_var}/debug/pprof/goroutine?debug=2" | gzip -9n >"$dir/$ts.debug2.txt.gz"
		fi
	done
	if [ "$i" -eq $((TICKS - 1)) ]; then
		curl -sf "$URL_A/debug/pprof/goroutineleak?debug=1" | gzip -9n >"$OUT/$NS/$WL/$POD_A/$ts.goroutineleak.debug1.txt.gz"
		curl -sf "$URL_A/leaks" >"$OUT/leaks-at-end.json"
	fi
done
echo "recorded $(find "$OUT/$NS" -type f | wc -l) files, $(du -sh "$OUT/$NS" | cut -f1)" >&2
