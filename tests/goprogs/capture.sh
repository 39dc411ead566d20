#!/usr/bin/env bash
# Build leaky with several Go toolchains/variants and capture REAL goroutine
# dumps, crash traces and a time series into tests/data/.
#
# usage: tests/goprogs/capture.sh [STEP...]
#   STEP: all (default) | go1.26 | go1.26-leakprofile | go1.26-tracebacklabels
#         | go1.27 | go1.27-gomod1.26 | synctest | minutes | examples | bad
#   env:  LEAKY_DATA_DIR   output root (default: tests/data next to this folder)
#         LEAKY_BUILD_DIR  binaries and scratch (default /var/tmp/leakhound-leaky-build)
#         GO127            Go 1.27 toolchain name for GOTOOLCHAIN (default go1.27.3)
#         LEAKY_PROMETHEUS path of a prometheus binary for examples (default: from PATH;
#                          the step is skipped when there is none)
#
# Every server binds 127.0.0.1 on a kernel-chosen port. Binaries stay in the
# build dir; only small text/profile files land in tests/data.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DATA=${LEAKY_DATA_DIR:-$HERE/../data}
mkdir -p "$DATA"
DATA=$(cd "$DATA" && pwd)
BUILD=${LEAKY_BUILD_DIR:-/var/tmp/leakhound-leaky-build}
GO127=${GO127:-go1.27.3}
export GOCACHE=${GOCACHE:-/var/tmp/leakhound-gocache}
export GOMODCACHE=${GOMODCACHE:-/var/tmp/leakhound-gomodcache}
export GOFLAGS=${GOFLAGS:-} GOPROXY=${GOPROXY:-https://proxy.golang.org,direct}

# What every steady-state capture leaks: distinct counts per pattern so a
# mix-up between patterns shows. Plus BURST benign goroutines alive at capture.
LEAKSET="chansend:5,chanrecv:4,select:3,httpbody:2,context:3,mutex:2,waitgroup:2,ticker:2,sleep:2,nilchan:1,nocases:1"
# -deadlock cannot use timer or network patterns (they keep the detector quiet).
DEADLOCKSET="chansend:5,chanrecv:4,select:3,context:3,mutex:2,waitgroup:2,nilchan:1,nocases:1"
BURST=10

mkdir -p "$BUILD" "$DATA"
PIDS=()
cleanup() {
	for p in "${PIDS[@]:-}"; do
		[ -n "$p" ] && kill "$p" 2>/dev/null || true
	done
}
trap cleanup EXIT

log() { printf '[capture] %s\n' "$*" >&2; }
die() { printf '[capture] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- building

DUMPSTAT=$BUILD/dumpstat
build_dumpstat() {
	(cd "$HERE" && GOTOOLCHAIN=local go build -o "$DUMPSTAT" ./cmd/dumpstat)
}

# build VARIANT -> sets BIN, BUILD_META (JSON object), RUN_ENV (array)
build() {
	local v=$1
	RUN_ENV=()
	case $v in
	go1.26 | go1.26-tracebacklabels)
		BIN=$BUILD/leaky-go1.26
		(cd "$HERE" && GOTOOLCHAIN=local CGO_ENABLED=0 go build -o "$BIN" ./cmd/leaky)
		BUILD_META='{"toolchain":"'"$(GOTOOLCHAIN=local go env GOVERSION)"'","go_mod_go":"1.26.0","cgo":false,"goexperiment":"","trimpath":false}'
		if [ "$v" = go1.26-tracebacklabels ]; then RUN_ENV=(GODEBUG=tracebacklabels=1); fi
		;;
	go1.26-leakprofile)
		BIN=$BUILD/leaky-go1.26-leakprofile
		(cd "$HERE" && GOTOOLCHAIN=local CGO_ENABLED=0 GOEXPERIMENT=goroutineleakprofile go build -o "$BIN" ./cmd/leaky)
		BUILD_META='{"toolchain":"'"$(GOTOOLCHAIN=local go env GOVERSION)"'","go_mod_go":"1.26.0","cgo":false,"goexperiment":"goroutineleakprofile","trimpath":false}'
		;;
	go1.27)
		# A go.mod saying go 1.27 is what gives Go 1.27's GODEBUG defaults
		# (tracebacklabels=1). Build a copy with the go line bumped.
		local src=$BUILD/src-go1.27
		rm -rf "$src" && mkdir -p "$src"
		cp -r "$HERE/go.mod" "$HERE/go.sum" "$HERE/cmd" "$HERE/synctestdemo" "$src/"
		(cd "$src" && GOTOOLCHAIN=$GO127 go mod edit -go=1.27.0 -toolchain=none)
		BIN=$BUILD/leaky-go1.27
		(cd "$src" && GOTOOLCHAIN=$GO127 CGO_ENABLED=0 go build -trimpath -o "$BIN" ./cmd/leaky)
		BUILD_META='{"toolchain":"'"$(cd "$src" && GOTOOLCHAIN=$GO127 go env GOVERSION)"'","go_mod_go":"1.27.0","cgo":false,"goexperiment":"","trimpath":true}'
		;;
	go1.27-gomod1.26)
		BIN=$BUILD/leaky-go1.27-gomod1.26
		(cd "$HERE" && GOTOOLCHAIN=$GO127 CGO_ENABLED=0 go build -o "$BIN" ./cmd/leaky)
		BUILD_META='{"toolchain":"'"$(cd "$HERE" && GOTOOLCHAIN=$GO127 go env GOVERSION)"'","go_mod_go":"1.26.0","cgo":false,"goexperiment":"","trimpath":false}'
		;;
	*) die "unknown variant $v" ;;
	esac
}

# ---------------------------------------------------------------- running

# start_leaky OUTPREFIX ARGS... -> sets LPID, URL. stdout/stderr go to OUTPREFIX.{out,err}.
start_leaky() {
	local prefix=$1
	shift
	env "${RUN_ENV[@]}" "$BIN" "$@" >"$prefix.out" 2>"$prefix.err" &
	LPID=$!
	PIDS+=("$LPID")
	local i
	for i in $(seq 1 100); do
		if head -1 "$prefix.out" 2>/dev/null | grep -q '^listening on http://'; then
			URL=$(head -1 "$prefix.out" | awk '{print $3}')
			return 0
		fi
		kill -0 "$LPID" 2>/dev/null || die "leaky exited early: $(cat "$prefix.err")"
		sleep 0.1
	done
	die "leaky did not print its address"
}

wait_steady() {
	local i
	for i in $(seq 1 200); do
		if curl -sf "$URL/leaks" | grep -q '"steady": true'; then return 0; fi
		sleep 0.1
	done
	die "leaky never reached a steady state"
}

# wait_exit PID -> sets RC
wait_exit() {
	RC=0
	wait "$1" || RC=$?
}

some_traffic() {
	local p
	for p in /api/orders /api/users /healthz /api/orders /metrics; do
		curl -sf -o /dev/null "$URL$p" || true
	done
}

# Wait until runtime.NumGoroutine() as reported by /leaks is the same twice
# in a row (short-lived request goroutines gone).
settle() {
	local prev="" cur i
	for i in $(seq 1 50); do
		sleep 0.3
		cur=$(curl -sf "$URL/leaks" | awk -F': ' '/"goroutines"/ {gsub(",","",$2); print $2}')
		if [ -n "$cur" ] && [ "$cur" = "$prev" ]; then return 0; fi
		prev=$cur
	done
}

# ---------------------------------------------------------------- variants

capture_variant() {
	local v=$1
	local out=$DATA/captures/$v
	local tmp=$BUILD/run-$v
	rm -rf "$out" "$tmp"
	mkdir -p "$out" "$tmp"
	build "$v"
	log "$v: built $BIN (${RUN_ENV[*]:-no extra env})"

	start_leaky "$tmp/leaky" -leak "$LEAKSET" -burst "$BURST" -burst-for 10m
	local pid=$LPID
	wait_steady
	some_traffic
	settle

	# The three formats from one curl over one keep-alive connection, so
	# they see the same goroutines; /leaks last gives the runtime's count.
	local try ok=0
	for try in 1 2 3; do
		curl -sf \
			-o "$out/goroutine.debug0.pb.gz" "$URL/debug/pprof/goroutine?debug=0" \
			-o "$out/goroutine.debug1.txt" "$URL/debug/pprof/goroutine?debug=1" \
			-o "$out/goroutine.debug2.txt" "$URL/debug/pprof/goroutine?debug=2" \
			-o "$tmp/leaks.json" "$URL/leaks"
		if "$DUMPSTAT" "$out/goroutine.debug0.pb.gz" "$out/goroutine.debug1.txt" "$out/goroutine.debug2.txt" |
			jq -e '[.[] | .goroutines] | unique | length == 1' >/dev/null; then
			ok=1
			break
		fi
		log "$v: formats disagree on the total, retrying"
		sleep 1
	done
	[ $ok = 1 ] || die "$v: debug=0/1/2 totals never agreed"

	local leakfiles=()
	if curl -sf "$URL/debug/pprof/" | grep -q "goroutineleak"; then
		# Each request runs its own leak-detection GC; debug=2 of the leak
		# profile is the full goroutine dump with "(leaked)" marks.
		curl -sf \
			-o "$out/goroutineleak.debug0.pb.gz" "$URL/debug/pprof/goroutineleak?debug=0" \
			-o "$out/goroutineleak.debug1.txt" "$URL/debug/pprof/goroutineleak?debug=1" \
			-o "$out/goroutineleak.debug2.txt" "$URL/debug/pprof/goroutineleak?debug=2" \
			-o "$out/goroutine.after-leakcheck.debug2.txt" "$URL/debug/pprof/goroutine?debug=2"
		leakfiles=("$out/goroutineleak.debug0.pb.gz" "$out/goroutineleak.debug1.txt" "$out/goroutineleak.debug2.txt" "$out/goroutine.after-leakcheck.debug2.txt")
		log "$v: goroutineleak profile captured"
	else
		log "$v: no goroutineleak profile served"
	fi

	# SIGQUIT with Go's default handling: all goroutines to stderr, exit 2.
	kill -QUIT "$pid"
	wait_exit "$pid"
	cp "$tmp/leaky.err" "$out/sigquit.stderr.txt"
	local crash_rcs="\"sigquit\":$RC"

	case $v in
	go1.26 | go1.27 | go1.26-leakprofile)
		capture_crashes "$v" "$out" "$tmp"
		crash_rcs="$crash_rcs,$CRASH_RCS"
		;;
	esac

	local stats
	stats=$("$DUMPSTAT" "$out"/*.pb.gz "$out"/*.txt)
	jq -n \
		--arg variant "$v" \
		--argjson build "$BUILD_META" \
		--arg run_env "${RUN_ENV[*]:-}" \
		--arg leakset "$LEAKSET" \
		--arg deadlockset "$DEADLOCKSET" \
		--argjson burst "$BURST" \
		--slurpfile leaks "$tmp/leaks.json" \
		--argjson rcs "{$crash_rcs}" \
		--argjson stats "$stats" \
		'{
			variant: $variant,
			go_version: $leaks[0].go_version,
			build: $build,
			run_env: $run_env,
			leaky_args: ("-leak " + $leakset + " -burst " + ($burst|tostring) + " -burst-for 10m"),
			leaked: $leaks[0].started,
			handler_label: $leaks[0].handler_label,
			burst_goroutines: $leaks[0].burst_goroutines,
			goroutines_at_capture: $leaks[0].goroutines,
			leak_profile_detected: ($stats["goroutineleak.debug1.txt"].by_pattern_label // null),
			deadlock_leaked_args: ("-deadlock -leak " + $deadlockset),
			deadlock_leaked: ($deadlockset | split(",") | map(split(":") | {(.[0]): (.[1] | tonumber)}) | add),
			exit_codes: $rcs,
			files: $stats,
			notes: [
				"goroutine.debug0/1/2 come from one curl over one keep-alive connection, right after which /leaks reported leaked and goroutines_at_capture.",
				"files.<name>.by_function counts goroutines by the first frame that identifies a pattern (see cmd/dumpstat); by_pattern_label by the pprof label pattern=.",
				"httpbody pins per leak: client persistConn.readLoop + writeLoop (labelled like the caller) and the server conn.serve blocked in main.streamHandler + its connReader.backgroundRead (label handler=/api/stream only).",
				"panic.stderr.txt / gotraceback_system / gotraceback_crash ran leaky -panic with the same -leak set and GOTRACEBACK=all/system/crash; gotraceback_crash_sigquit is SIGQUIT to a running leaky under GOTRACEBACK=crash (register dumps, all threads, then SIGABRT); deadlock ran deadlock_leaked_args with default GOTRACEBACK; sigquit.stderr.txt is SIGQUIT with default GOTRACEBACK, sent right after the profiles were taken."
			]
		}' >"$out/expected.json"
	verify_variant "$out"
	log "$v: done -> $out"
}

# capture_crashes VARIANT OUT TMP -> sets CRASH_RCS
capture_crashes() {
	local v=$1 out=$2 tmp=$3
	local name tb rc
	CRASH_RCS=""
	for spec in panic:all gotraceback_system:system gotraceback_crash:crash; do
		name=${spec%%:*}
		tb=${spec#*:}
		(
			ulimit -c 0
			env "${RUN_ENV[@]}" GOTRACEBACK="$tb" "$BIN" -panic -leak "$LEAKSET" -burst "$BURST" -burst-for 10m \
				>"$tmp/$name.out" 2>"$out/$name.stderr.txt"
		) 2>/dev/null && rc=0 || rc=$?
		CRASH_RCS="$CRASH_RCS\"$name\":$rc,"
	done
	# SIGQUIT under GOTRACEBACK=crash: every thread's stack, register dumps,
	# then SIGABRT (core dumps off).
	(
		ulimit -c 0
		RUN_ENV+=(GOTRACEBACK=crash)
		start_leaky "$tmp/crashquit" -leak "$LEAKSET" -burst "$BURST" -burst-for 10m
		wait_steady
		settle
		kill -QUIT "$LPID"
		wait_exit "$LPID"
		exit "$RC"
	) 2>/dev/null && rc=0 || rc=$?
	cp "$tmp/crashquit.err" "$out/gotraceback_crash_sigquit.stderr.txt"
	CRASH_RCS="$CRASH_RCS\"gotraceback_crash_sigquit\":$rc,"
	(env "${RUN_ENV[@]}" timeout 60 "$BIN" -deadlock -leak "$DEADLOCKSET" >"$tmp/deadlock.out" 2>"$out/deadlock.stderr.txt") && rc=0 || rc=$?
	CRASH_RCS="$CRASH_RCS\"deadlock\":$rc"
	grep -q "all goroutines are asleep - deadlock" "$out/deadlock.stderr.txt" || die "$v: no deadlock report"
	grep -q "^panic: leaky: requested panic" "$out/panic.stderr.txt" || die "$v: no panic trace"
}

# verify_variant OUT: per pattern, the number leaked equals what each format shows.
verify_variant() {
	local out=$1
	jq -e -r '
		.leaked as $l | .files as $f |
		def eq($a; $b; $what): if $a == $b then empty else "\($what): \($a) != \($b)" end;
		[
			( $l | to_entries[] | select(.key != "httpbody") | .key as $p | .value as $n |
				eq($f["goroutine.debug1.txt"].by_pattern_label[$p]; $n; "debug1 label \($p)"),
				eq($f["goroutine.debug0.pb.gz"].by_pattern_label[$p]; $n; "debug0 label \($p)"),
				eq($f["goroutine.debug1.txt"].by_function[$p]; $n; "debug1 function \($p)"),
				eq($f["goroutine.debug2.txt"].by_function[$p]; $n; "debug2 function \($p)"),
				(if ($f["goroutine.debug2.txt"].headers_with_labels // 0) > 0
				 then eq($f["goroutine.debug2.txt"].by_pattern_label[$p]; $n; "debug2 header label \($p)") else empty end) ),
			( ["httpbody.client_readLoop","httpbody.client_writeLoop","httpbody.server_handler"][] as $k |
				eq($f["goroutine.debug2.txt"].by_function[$k]; $l.httpbody; "debug2 \($k)") ),
			eq($f["goroutine.debug1.txt"].header_total; $f["goroutine.debug2.txt"].goroutines; "debug1 total vs debug2"),
			eq($f["goroutine.debug0.pb.gz"].goroutines; $f["goroutine.debug2.txt"].goroutines; "debug0 total vs debug2"),
			eq($f["goroutine.debug2.txt"].by_function.burst; .burst_goroutines; "burst"),
			( .deadlock_leaked | to_entries[] | select($f["deadlock.stderr.txt"] != null) |
				eq($f["deadlock.stderr.txt"].by_function[.key]; .value; "deadlock \(.key)") ),
			( $l | to_entries[] | select(.key != "httpbody") | select($f["panic.stderr.txt"] != null) |
				eq($f["panic.stderr.txt"].by_function[.key]; .value; "panic \(.key)") ),
			( select($f["goroutineleak.debug1.txt"] != null) |
				eq($f["goroutineleak.debug1.txt"].header_total; $f["goroutineleak.debug0.pb.gz"].goroutines; "leak debug1 vs debug0"),
				eq($f["goroutineleak.debug1.txt"].header_total; $f["goroutineleak.debug2.txt"].leaked_status; "leak debug1 vs (leaked) in debug2") )
		] | if length == 0 then "ok" else (.[] | error) end
	' "$out/expected.json" >/dev/null || die "verification failed for $out (see expected.json)"
	log "$(basename "$out"): counts per pattern agree across debug=0/1/2 and /leaks"
}

# ---------------------------------------------------------------- minutes

# Goroutines blocked for over a minute: debug=2 headers get ", N minutes".
# The wait start is stamped during a GC (forced here via heap?gc=1), so the
# annotation needs a GC after the goroutine blocked. Takes ~70 s.
capture_minutes() {
	local v=go1.27-minutes
	local out=$DATA/captures/$v tmp=$BUILD/run-$v
	rm -rf "$out" "$tmp"
	mkdir -p "$out" "$tmp"
	build go1.27
	local set="chansend:3,select:2,mutex:2,httpbody:1,sleep:1"
	start_leaky "$tmp/leaky" -leak "$set"
	local pid=$LPID
	wait_steady
	curl -sf -o /dev/null "$URL/debug/pprof/heap?gc=1"
	local blocked_at
	blocked_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	sleep "${LEAKY_MINUTES_WAIT_SECONDS:-65}"
	curl -sf -o /dev/null "$URL/debug/pprof/heap?gc=1"
	settle
	curl -sf -o "$out/goroutine.debug2.txt" "$URL/debug/pprof/goroutine?debug=2" \
		-o "$out/goroutine.debug1.txt" "$URL/debug/pprof/goroutine?debug=1" \
		-o "$out/goroutineleak.debug2.txt" "$URL/debug/pprof/goroutineleak?debug=2" \
		-o "$tmp/leaks.json" "$URL/leaks"
	kill "$pid"
	wait_exit "$pid"
	grep -q ", 1 minutes" "$out/goroutine.debug2.txt" || die "$v: no ', 1 minutes' annotation"
	jq -n --arg variant "$v" --argjson build "$BUILD_META" --arg set "$set" --arg blocked "$blocked_at" \
		--slurpfile leaks "$tmp/leaks.json" --argjson stats "$("$DUMPSTAT" "$out"/*.txt)" \
		'{variant:$variant, go_version:$leaks[0].go_version, build:$build, leaky_args:("-leak " + $set),
		  leaked:$leaks[0].started, goroutines_at_capture:$leaks[0].goroutines, forced_gc_after_leaks_at:$blocked,
		  files:$stats,
		  notes:["GC forced via /debug/pprof/heap?gc=1 once the leaks were started and again ~65 s later; goroutine.debug2 then goroutineleak.debug2 in one curl."]}' \
		>"$out/expected.json"
	log "$v: done -> $out"
}

# ---------------------------------------------------------------- synctest

capture_synctest() {
	local out=$DATA/captures/synctest
	mkdir -p "$out"
	local rc=0
	(cd "$HERE" && GOTOOLCHAIN=local LEAKY_SYNCTEST_DEADLOCK=1 go test -count=1 -run TestBubbleDeadlock ./synctestdemo/ \
		>"$out/synctest_deadlock.go1.26.txt" 2>&1) || rc=$?
	[ $rc -ne 0 ] || die "synctest test did not fail"
	grep -q "synctest bubble" "$out/synctest_deadlock.go1.26.txt" || die "no synctest bubble in output"
	rc=0
	(cd "$HERE" && GOTOOLCHAIN=$GO127 LEAKY_SYNCTEST_DEADLOCK=1 go test -count=1 -run TestBubbleDeadlock ./synctestdemo/ \
		>"$out/synctest_deadlock.go1.27.txt" 2>&1) || rc=$?
	[ $rc -ne 0 ] || die "synctest test (1.27) did not fail"
	log "synctest: done -> $out"
}

# ---------------------------------------------------------------- examples

# A pod leaking chansend+httpbody, snapshotted every few seconds; file names
# are the real capture times (RFC 3339, UTC, Z).
capture_examples() {
	build go1.26
	local ns=shop
	local podA=orders-7d9f8b6c5-x2kqp podB=orders-7d9f8b6c5-m4zt9
	local ex=$DATA/examples
	local tmp=$BUILD/run-examples
	rm -rf "$ex/$ns" "$ex/prometheus" "${ex}-expected.json" "$tmp"
	mkdir -p "$ex/$ns/$podA" "$ex/$ns/$podB" "$tmp"
	local args=(-leak "chansend:1/s,httpbody:0.2/s")

	start_leaky "$tmp/$podA" "${args[@]}"
	local pidA=$LPID urlA=$URL
	start_leaky "$tmp/$podB" "${args[@]}"
	local pidB=$LPID urlB=$URL

	local prom=${LEAKY_PROMETHEUS:-$(command -v prometheus || true)} prompid="" promurl=""
	if [ -n "$prom" ]; then
		start_prometheus "$prom" "$tmp" "$ns" "$podA" "$urlA" "$podB" "$urlB"
		prompid=$PROMPID
		promurl=$PROMURL
	else
		log "examples: no prometheus binary; skipping query_range.json"
	fi

	local start_ts snapshots="[]" i ts
	start_ts=$(date -u +%s)
	sleep 3
	for i in 1 2 3 4 5 6; do
		ts=$(date -u +%Y-%m-%dT%H:%M:%SZ)
		curl -sf -o "$ex/$ns/$podA/$ts.debug2.txt" "$urlA/debug/pprof/goroutine?debug=2" -o "$tmp/leaksA.json" "$urlA/leaks"
		if [ $((i % 2)) = 1 ]; then
			curl -sf -o "$ex/$ns/$podB/$ts.debug1.txt" "$urlB/debug/pprof/goroutine?debug=1" \
				-o "$ex/$ns/$podB/$ts.pb.gz" "$urlB/debug/pprof/goroutine?debug=0" -o "$tmp/leaksB.json" "$urlB/leaks"
			snapshots=$(jq -c --arg ts "$ts" --arg pod "$podB" --slurpfile l "$tmp/leaksB.json" \
				'. + [{time:$ts, pod:$pod, files:[$ts+".debug1.txt",$ts+".pb.gz"], leaked:$l[0].started, goroutines:$l[0].goroutines}]' <<<"$snapshots")
		fi
		snapshots=$(jq -c --arg ts "$ts" --arg pod "$podA" --slurpfile l "$tmp/leaksA.json" \
			'. + [{time:$ts, pod:$pod, files:[$ts+".debug2.txt"], leaked:$l[0].started, goroutines:$l[0].goroutines}]' <<<"$snapshots")
		[ $i = 6 ] || sleep 5
	done
	local end_ts
	end_ts=$(date -u +%s)

	if [ -n "$prompid" ]; then
		# Keep both pods leaking and scraped a while longer so the series
		# has ~70 points per pod.
		sleep "${LEAKY_PROM_EXTRA_SECONDS:-40}"
		end_ts=$(date -u +%s)
		sleep 2 # one more scrape past end
		mkdir -p "$ex/prometheus"
		curl -sf -G "$promurl/api/v1/query_range" \
			--data-urlencode "query=go_goroutines{job=\"leaky\"}" \
			--data-urlencode "start=$start_ts" --data-urlencode "end=$end_ts" --data-urlencode "step=1s" \
			-o "$ex/prometheus/query_range.json"
		jq -e '.status == "success" and .data.resultType == "matrix" and (.data.result | length == 2)' \
			"$ex/prometheus/query_range.json" >/dev/null || die "prometheus query_range did not return 2 series"
		curl -sf "$promurl/api/v1/status/buildinfo" -o "$tmp/prom-buildinfo.json" || true
		kill "$prompid" 2>/dev/null || true
		wait_exit "$prompid"
	fi
	kill "$pidA" "$pidB"
	wait_exit "$pidA"
	wait_exit "$pidB"

	jq -n --arg ns "$ns" --argjson snaps "$snapshots" --arg args "${args[*]}" \
		--arg gov "$(jq -r .go_version "$tmp/leaksA.json")" \
		--arg prom "$( [ -f "$tmp/prom-buildinfo.json" ] && jq -r .data.version "$tmp/prom-buildinfo.json" || echo none)" \
		--argjson range "{\"start\":$start_ts,\"end\":$end_ts,\"step\":\"1s\"}" \
		'{namespace:$ns, go_version:$gov, leaky_args:$args, prometheus_version:$prom,
		  prometheus_query_range:({query:"go_goroutines{job=\"leaky\"}"} + $range),
		  snapshots:$snaps}' >"${ex}-expected.json"
	# A pod on Go 1.27 whose runtime confirmed its leaks: the goroutine dump after the leak
	# check ("(leaked)" marks) and the goroutineleak profile at debug=1 and debug=0, all taken
	# at one instant (the capture's file time), named {namespace}/{pod}/{time}.
	local lp=$ex/payments/checkout-6b5f4d8c7-q9w2e src=$DATA/captures/go1.27
	if [ -f "$src/goroutineleak.debug1.txt" ]; then
		rm -rf "$ex/payments"
		mkdir -p "$lp"
		local t
		t=$(date -u -r "$src/goroutineleak.debug1.txt" +%Y-%m-%dT%H:%M:%SZ)
		cp "$src/goroutine.after-leakcheck.debug2.txt" "$lp/$t.debug2.txt"
		cp "$src/goroutineleak.debug1.txt" "$lp/$t.goroutineleak.debug1.txt"
		cp "$src/goroutineleak.debug0.pb.gz" "$lp/$t.goroutineleak.pb.gz"
	fi
	log "examples: done -> $ex"
}

# start_prometheus BIN TMP NS PODA URLA PODB URLB -> PROMPID, PROMURL
start_prometheus() {
	local bin=$1 tmp=$2 ns=$3 podA=$4 urlA=$5 podB=$6 urlB=$7
	local port
	port=$(free_port)
	cat >"$tmp/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: leaky
    static_configs:
      - targets: ['${urlA#http://}']
        labels: {namespace: '$ns', pod: '$podA', container: 'orders'}
      - targets: ['${urlB#http://}']
        labels: {namespace: '$ns', pod: '$podB', container: 'orders'}
EOF
	"$bin" --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/tsdb" \
		--web.listen-address="127.0.0.1:$port" >"$tmp/prometheus.log" 2>&1 &
	PROMPID=$!
	PIDS+=("$PROMPID")
	PROMURL=http://127.0.0.1:$port
	local i
	for i in $(seq 1 100); do
		if curl -sf "$PROMURL/-/ready" >/dev/null 2>&1; then return 0; fi
		sleep 0.2
	done
	die "prometheus did not become ready: $(tail -5 "$tmp/prometheus.log")"
}

free_port() {
	local port
	# Ask leaky's own listener logic? Simpler: let the kernel pick via a short-lived bind.
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()' 2>/dev/null || true)
	[ -n "$port" ] || port=$((20000 + RANDOM % 20000))
	echo "$port"
}

# ---------------------------------------------------------------- bad inputs

capture_bad() {
	local bad=$DATA/bad
	mkdir -p "$bad"
	local src=$DATA/captures/go1.26/goroutine.debug2.txt
	[ -f "$src" ] || die "bad: run the go1.26 step first (needs $src)"

	# Truncated debug=2: cut in the middle of a frame line past the middle of the file.
	local size cut
	size=$(wc -c <"$src")
	cut=$(awk -v half=$((size / 2)) 'BEGIN{o=0} {o+=length($0)+1; if (o>half && $0 ~ /^\t/) {print o-int(length($0)/2); exit}}' "$src")
	head -c "$cut" "$src" >"$bad/truncated.debug2.txt"

	cat >"$bad/bad_gateway.debug2.txt" <<'EOF'
<html>
<head><title>502 Bad Gateway</title></head>
<body>
<center><h1>502 Bad Gateway</h1></center>
<hr><center>nginx/1.25.3</center>
</body>
</html>
EOF

	# 4 KiB of deterministic pseudo-random bytes.
	head -c 4096 /dev/zero | openssl enc -aes-128-ctr -nosalt -K 6c65616b686f756e642d62616400 -iv 00000000000000000000000000000000 2>/dev/null >"$bad/random.bin"
	cp "$bad/random.bin" "$bad/random.debug2.txt"

	# Gzip bomb: 2 GiB + 1 MiB of zeros, streamed; ~2 MB on disk.
	if [ ! -s "$bad/bomb.pb.gz" ]; then
		head -c $((2 * 1024 * 1024 * 1024 + 1024 * 1024)) /dev/zero | gzip -9 -n >"$bad/bomb.pb.gz"
	fi
	[ "$(stat -c %s "$bad/bomb.pb.gz")" -lt $((5 * 1024 * 1024)) ] || die "bomb too big"

	# A truncated gzip stream (a real debug=0 profile cut in half).
	local pb=$DATA/captures/go1.26/goroutine.debug0.pb.gz
	head -c $(($(wc -c <"$pb") / 2)) "$pb" >"$bad/truncated.pb.gz"

	cat >"$bad/absurd_counts.debug1.txt" <<'EOF'
goroutine profile: total 99999999999999999999
99999999999999999999 @ 0x48b84e 0x419a7c 0x419677 0x7f0bf4 0x493161
# labels: {"handler":"/api/orders", "pattern":"chansend"}
#	0x7f0bf3	main.leakChanSend+0x33	/app/cmd/leaky/patterns.go:83

-3 @ 0x48b84e 0x41aa6e 0x41a5b2 0x7f0d34 0x493161
#	0x7f0d33	main.leakChanRecv+0x33	/app/cmd/leaky/patterns.go:95

18446744073709551616 @ 0x48b84e 0x468085 0x7f0ecc 0x493161
#	0x7f0ecb	main.leakSelect+0x6b	/app/cmd/leaky/patterns.go:112

EOF

	cat >"$bad/vector_not_matrix.json" <<'EOF'
{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"go_goroutines","instance":"10.0.0.7:8080","job":"orders","namespace":"shop","pod":"orders-7d9f8b6c5-x2kqp"},"value":[1767225600.000,"1234"]}]}}
EOF
	: >"$bad/empty.debug2.txt"
	log "bad: done -> $bad"
}

# ---------------------------------------------------------------- main

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(all)
if [ "${steps[0]}" = all ]; then
	steps=(go1.26 go1.26-leakprofile go1.26-tracebacklabels go1.27 go1.27-gomod1.26 synctest minutes examples bad)
fi
build_dumpstat
for s in "${steps[@]}"; do
	case $s in
	go1.2*) capture_variant "$s" ;;
	synctest) capture_synctest ;;
	minutes) capture_minutes ;;
	examples) capture_examples ;;
	bad) capture_bad ;;
	*) die "unknown step $s" ;;
	esac
done
