package agent

import (
	"fmt"
	"math"
	"runtime/debug"
)

// FuseOptions bound what a full goroutine dump (debug=2) may cost. debug=2 stops the world
// while every goroutine's stack is printed into one buffer that runtime/pprof grows by
// doubling from 1 MiB up to 64 MiB (it truncates past that): on a process with a million
// goroutines that is seconds of pause and up to ~128 MiB of allocation, in a container that may
// already be near its memory limit. debug=0 and debug=1 aggregate by stack and are not fused.
type FuseOptions struct {
	// MaxGoroutines: above this many goroutines debug=2 is not served in full. 0 means the
	// default, 100,000; negative disables the rule.
	MaxGoroutines int
	// MemoryLimit in bytes overrides the container's limit (cgroup v2 memory.max). 0: use
	// memory.max, else the Go memory limit (GOMEMLIMIT / debug.SetMemoryLimit) when one is
	// set; with neither the memory rule is off. Set it where the cgroup cannot be read.
	MemoryLimit int64
	// Headroom: the share of the limit the process may reach, counting the dump's estimated
	// cost, before debug=2 is not served in full. 0 means 0.8.
	Headroom float64
	// BytesPerGoroutine estimates a goroutine's share of a debug=2 dump (0 means 1024; a
	// typical record is 0.5–2 KiB).
	BytesPerGoroutine int64
	// Refuse answers 503 (with Retry-After) instead of serving debug=1 in place of debug=2.
	Refuse bool
}

func (f FuseOptions) maxGoroutines() int {
	if f.MaxGoroutines == 0 {
		return 100_000
	}
	return f.MaxGoroutines
}

func (f FuseOptions) headroom() float64 {
	if f.Headroom <= 0 || f.Headroom > 1 {
		return 0.8
	}
	return f.Headroom
}

func (f FuseOptions) bytesPerGoroutine() int64 {
	if f.BytesPerGoroutine <= 0 {
		return 1024
	}
	return f.BytesPerGoroutine
}

// Decision is what the fuse decided for one debug=2 request.
type Decision struct {
	// Full: serve debug=2 as asked.
	Full bool
	// Reason when not Full: "goroutines", "memory" or "busy".
	Reason string
	// Detail: the figures behind the decision, "key=value" pairs joined by "; ".
	Detail string
}

// Header is the Leakhound-Fuse header value: "full; goroutines=N", or
// "downgraded; reason=R; ..." (served as debug=1), or "refused; reason=R; ..." (503).
func (d Decision) Header(refuse bool) string {
	if d.Full {
		return "full; " + d.Detail
	}
	verb := "downgraded"
	if refuse {
		verb = "refused"
	}
	return verb + "; reason=" + d.Reason + "; " + d.Detail
}

// estimateDumpCost is what a debug=2 dump of n goroutines allocates: runtime/pprof's buffer
// doubles from 1 MiB until the dump fits, up to 64 MiB, and the last two buffers may be live
// together.
func (f FuseOptions) estimateDumpCost(n int) int64 {
	need := int64(n) * f.bytesPerGoroutine()
	buf := int64(1 << 20)
	for buf < need && buf < 64<<20 {
		buf *= 2
	}
	return buf + buf/2
}

// memoryLimit: the configured limit, else the cgroup's, else the Go memory limit; 0 if none.
func (f FuseOptions) memoryLimit(s Sample) int64 {
	if f.MemoryLimit > 0 {
		return f.MemoryLimit
	}
	if s.Cgroup != nil && s.Cgroup.MemoryMax != nil && *s.Cgroup.MemoryMax > 0 {
		return *s.Cgroup.MemoryMax
	}
	if l := debug.SetMemoryLimit(-1); l > 0 && l != math.MaxInt64 {
		return l
	}
	return 0
}

// memoryUsage: the cgroup's memory.current (what the kernel charges the container, the
// figure the OOM killer compares to memory.max), else the process's VmRSS; 0 if neither.
func memoryUsage(s Sample) int64 {
	if s.Cgroup != nil && s.Cgroup.MemoryCurrent != nil {
		return *s.Cgroup.MemoryCurrent
	}
	if s.Process.VmRSSBytes != nil {
		return *s.Process.VmRSSBytes
	}
	return 0
}

// decide judges a debug=2 request against the sample (busy is judged by the caller).
func (f FuseOptions) decide(s Sample) Decision {
	n := s.Goroutines
	if max := f.maxGoroutines(); max >= 0 && n > max {
		return Decision{Reason: "goroutines", Detail: fmt.Sprintf("goroutines=%d; max_goroutines=%d", n, max)}
	}
	if limit := f.memoryLimit(s); limit > 0 {
		usage := memoryUsage(s)
		cost := f.estimateDumpCost(n)
		allowed := int64(float64(limit) * f.headroom())
		if usage+cost > allowed {
			return Decision{Reason: "memory", Detail: fmt.Sprintf(
				"goroutines=%d; usage=%d; dump_cost=%d; limit=%d; allowed=%d", n, usage, cost, limit, allowed)}
		}
	}
	return Decision{Full: true, Detail: fmt.Sprintf("goroutines=%d", n)}
}

// Decide judges a debug=2 dump against the sample as the handler does (without the
// one-at-a-time rule, which the caller applies): for agent/push, which takes its dumps itself.
func (f FuseOptions) Decide(s Sample) Decision { return f.decide(s) }
