package agent

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
)

// counters are the agent's own metrics, served in the Prometheus text format (0.0.4) at
// AgentPrefix+"/metrics":
//
//	leakhound_agent_requests_total{endpoint="goroutine|goroutineleak|metrics|context|agent_metrics|unknown",code="200"}
//	leakhound_agent_denied_total{reason="unauthorized|rate_limited|token_unavailable"}
//	leakhound_agent_fuse_total{decision="full|downgraded|refused",reason="none|goroutines|memory|busy"}
//	leakhound_agent_rate_limit_clients (gauge: client identities the limiter holds)
type counters struct {
	mu     sync.Mutex
	values map[string]map[string]uint64 // metric name → label string → count
}

var counterHelp = map[string]string{
	"leakhound_agent_requests_total": "Requests answered by the leakhound agent, by endpoint and status code.",
	"leakhound_agent_denied_total":   "Requests the leakhound agent denied before serving them, by reason.",
	"leakhound_agent_fuse_total":     "debug=2 requests by the fuse's decision: full dump, downgraded to debug=1, or refused.",
}

func newCounters() *counters {
	c := &counters{values: map[string]map[string]uint64{}}
	// Present from the start, so that a rate() over them has a zero to start from.
	c.add("leakhound_agent_fuse_total", "full", "none", 0)
	c.add("leakhound_agent_fuse_total", "downgraded", "goroutines", 0)
	c.add("leakhound_agent_fuse_total", "downgraded", "memory", 0)
	c.add("leakhound_agent_fuse_total", "downgraded", "busy", 0)
	c.add("leakhound_agent_denied_total", "unauthorized", "", 0)
	c.add("leakhound_agent_denied_total", "rate_limited", "", 0)
	return c
}

func labelString(name, a, b string) string {
	switch name {
	case "leakhound_agent_requests_total":
		return fmt.Sprintf(`endpoint=%q,code=%q`, a, b)
	case "leakhound_agent_fuse_total":
		return fmt.Sprintf(`decision=%q,reason=%q`, a, b)
	default:
		return fmt.Sprintf(`reason=%q`, a)
	}
}

func (c *counters) add(name, a, b string, n uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.values[name]
	if m == nil {
		m = map[string]uint64{}
		c.values[name] = m
	}
	m[labelString(name, a, b)] += n
}

// get returns one counter's value (tests).
func (c *counters) get(name, a, b string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.values[name][labelString(name, a, b)]
}

func (c *counters) write(w io.Writer, clients int) error {
	c.mu.Lock()
	var sb strings.Builder
	names := make([]string, 0, len(c.values))
	for n := range c.values {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&sb, "# HELP %s %s\n# TYPE %s counter\n", n, counterHelp[n], n)
		labels := make([]string, 0, len(c.values[n]))
		for l := range c.values[n] {
			labels = append(labels, l)
		}
		sort.Strings(labels)
		for _, l := range labels {
			fmt.Fprintf(&sb, "%s{%s} %d\n", n, l, c.values[n][l])
		}
	}
	c.mu.Unlock()
	fmt.Fprintf(&sb, "# HELP leakhound_agent_rate_limit_clients Client identities the agent's rate limiter holds.\n"+
		"# TYPE leakhound_agent_rate_limit_clients gauge\nleakhound_agent_rate_limit_clients %d\n", clients)
	_, err := io.WriteString(w, sb.String())
	return err
}
