// Package agent is the Go side of leakhound: an http.Handler that exposes the goroutine
// profiles leakhound scrapes, safely, with the container context of each snapshot.
//
//   - Safe exposure: PREFIX/goroutine and PREFIX/goroutineleak (?debug=0|1|2, as
//     net/http/pprof serves them; goroutineleak only where the runtime has it: Go 1.26 with
//     GOEXPERIMENT=goroutineleakprofile, Go 1.27 always — else 404), the service's own
//     /metrics handler if given, behind a bearer token (compared in constant time) or a
//     verified client certificate (TLSConfig), rate-limited by a token bucket per client.
//     Nothing is registered on http.DefaultServeMux unless RegisterDefault is called.
//   - A fuse (FuseOptions): debug=2 stops the world and allocates up to ~128 MiB; above a
//     goroutine count, or when the container's memory use plus the dump's estimated cost
//     would pass a share of its limit (cgroup v2 memory.max), or while another debug=2 dump
//     is being written, debug=1 is served instead (or 503 with Refuse). The Leakhound-Fuse
//     header and the leakhound_agent_fuse_total counter say what was decided.
//   - Container context (Sampler): cgroup v2 memory.current, memory.max, cpu.stat,
//     pids.current and /proc/self/status Threads and VmRSS, sampled with each profile and
//     sent in the Leakhound-Context header; AGENT_PREFIX/context serves the same as JSON.
//
// Correlation of goroutines with traces is in the sub-package correlate; push mode (streaming
// snapshots to leakhound serve over gRPC) in the sub-package push.
//
//	h, err := agent.New(agent.Options{TokenFile: "/var/run/secrets/leakhound/token",
//		Metrics: promhttp.Handler()})
//	if err != nil { log.Fatal(err) }
//	go http.ListenAndServe(":6060", h) // a port of its own, or h.Register(mux)
package agent
