package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Sample is the container context taken with a snapshot: the process's cgroup v2 counters
// and its /proc/self/status lines that matter for a goroutine leak. A field is nil when its
// file is missing or does not parse (a cgroup v1 host, no /proc): "unknown", never 0.
//
// JSON (the context endpoint) — every number an integer, bytes in bytes:
//
//	{"time":"2026-12-03T14:00:00.123456789Z","goroutines":1234,
//	 "cgroup":{"dir":"/sys/fs/cgroup","memory_current_bytes":73400320,"memory_max_bytes":268435456,
//	           "memory_max_unlimited":false,"cpu_usage_usec":912345,"cpu_nr_periods":100,
//	           "cpu_nr_throttled":7,"cpu_throttled_usec":52000,"pids_current":14},
//	 "process":{"threads":12,"vm_rss_bytes":41943040}}
//
// "cgroup" is absent when no cgroup v2 directory was found; "memory_max_bytes" is null and
// "memory_max_unlimited" true when memory.max reads "max".
type Sample struct {
	Time       time.Time    `json:"time"`
	Goroutines int          `json:"goroutines"`
	Cgroup     *CgroupStats `json:"cgroup,omitempty"`
	Process    ProcStats    `json:"process"`
}

// CgroupStats holds the cgroup v2 counters of the process's cgroup.
type CgroupStats struct {
	Dir                string `json:"dir"`
	MemoryCurrent      *int64 `json:"memory_current_bytes"`
	MemoryMax          *int64 `json:"memory_max_bytes"`
	MemoryMaxUnlimited bool   `json:"memory_max_unlimited"`
	CPUUsageUsec       *int64 `json:"cpu_usage_usec"`
	CPUNrPeriods       *int64 `json:"cpu_nr_periods"`
	CPUNrThrottled     *int64 `json:"cpu_nr_throttled"`
	CPUThrottledUsec   *int64 `json:"cpu_throttled_usec"`
	PidsCurrent        *int64 `json:"pids_current"`
}

// ProcStats holds the lines of /proc/self/status the agent reports.
type ProcStats struct {
	Threads    *int64 `json:"threads"`
	VmRSSBytes *int64 `json:"vm_rss_bytes"`
}

// maxStatFile bounds what is read of any cgroup or proc file (they are a few hundred bytes).
const maxStatFile = 64 << 10

// Sampler reads a Sample from a cgroup v2 directory and a proc status file. The zero value
// reads nothing; use NewSampler.
type Sampler struct {
	cgroupDir  string // "" = no cgroup v2
	procStatus string // "" = none
}

// NewSampler returns a sampler of cgroupDir (where memory.current, memory.max, cpu.stat and
// pids.current are) and procStatus (a /proc/PID/status file). An empty cgroupDir is resolved
// with ResolveCgroupDir, an empty procStatus is /proc/self/status.
func NewSampler(cgroupDir, procStatus string) *Sampler {
	if cgroupDir == "" {
		cgroupDir = ResolveCgroupDir("/proc/self/cgroup", "/sys/fs/cgroup")
	}
	if procStatus == "" {
		procStatus = "/proc/self/status"
	}
	return &Sampler{cgroupDir: cgroupDir, procStatus: procStatus}
}

// CgroupDir is the cgroup v2 directory the sampler reads ("" if none).
func (s *Sampler) CgroupDir() string { return s.cgroupDir }

// ResolveCgroupDir finds the process's cgroup v2 directory: the "0::PATH" line of procCgroup
// (/proc/self/cgroup) joined to mount (/sys/fs/cgroup), else mount itself (a container with
// its own cgroup namespace sees its cgroup at the root), whichever has memory.current or
// cgroup.controllers. "" when neither does (cgroup v1, or no cgroupfs).
func ResolveCgroupDir(procCgroup, mount string) string {
	var candidates []string
	if b, err := readBounded(procCgroup); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "0::"); ok {
				p := filepath.Clean("/" + rest)
				if !strings.Contains(p, "..") {
					candidates = append(candidates, filepath.Join(mount, p))
				}
			}
		}
	}
	candidates = append(candidates, mount)
	for _, dir := range candidates {
		for _, f := range []string{"memory.current", "cgroup.controllers"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
				return dir
			}
		}
	}
	return ""
}

// Sample reads the files now. It never fails: what cannot be read is nil.
func (s *Sampler) Sample() Sample {
	out := Sample{Time: time.Now().UTC(), Goroutines: runtime.NumGoroutine()}
	if s.cgroupDir != "" {
		out.Cgroup = readCgroup(s.cgroupDir)
	}
	if s.procStatus != "" {
		out.Process = readProcStatus(s.procStatus)
	}
	return out
}

func readCgroup(dir string) *CgroupStats {
	c := &CgroupStats{Dir: dir}
	c.MemoryCurrent = readSingle(filepath.Join(dir, "memory.current"))
	if b, err := readBounded(filepath.Join(dir, "memory.max")); err == nil {
		v := strings.TrimSpace(string(b))
		if v == "max" {
			c.MemoryMaxUnlimited = true
		} else {
			c.MemoryMax = parseCount(v)
		}
	}
	if b, err := readBounded(filepath.Join(dir, "cpu.stat")); err == nil {
		kv := parseFlatKeyed(b)
		c.CPUUsageUsec = kv["usage_usec"]
		c.CPUNrPeriods = kv["nr_periods"]
		c.CPUNrThrottled = kv["nr_throttled"]
		c.CPUThrottledUsec = kv["throttled_usec"]
	}
	c.PidsCurrent = readSingle(filepath.Join(dir, "pids.current"))
	return c
}

func readProcStatus(path string) ProcStats {
	var p ProcStats
	b, err := readBounded(path)
	if err != nil {
		return p
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(val)
		switch key {
		case "Threads":
			if len(fields) == 1 {
				p.Threads = parseCount(fields[0])
			}
		case "VmRSS":
			// "VmRSS:	   41024 kB"
			if len(fields) == 2 && fields[1] == "kB" {
				if kb := parseCount(fields[0]); kb != nil && *kb <= (1<<63-1)/1024 {
					v := *kb * 1024
					p.VmRSSBytes = &v
				}
			}
		}
	}
	return p
}

// readBounded reads at most maxStatFile bytes; a longer file is an error.
func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStatFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxStatFile {
		return nil, fmt.Errorf("%s: longer than %d bytes", path, maxStatFile)
	}
	return b, nil
}

func readSingle(path string) *int64 {
	b, err := readBounded(path)
	if err != nil {
		return nil
	}
	return parseCount(strings.TrimSpace(string(b)))
}

// parseCount parses a non-negative decimal that fits an int64; nil otherwise.
func parseCount(s string) *int64 {
	if s == "" || len(s) > 19 {
		return nil
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return nil
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return nil
	}
	return &v
}

// parseFlatKeyed parses a cgroup "flat keyed" file (cpu.stat): "key value" lines. A key seen
// twice is dropped (nil): the file is not what the kernel writes.
func parseFlatKeyed(b []byte) map[string]*int64 {
	out := map[string]*int64{}
	seen := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) != 2 {
			continue
		}
		if seen[fields[0]] {
			out[fields[0]] = nil
			continue
		}
		seen[fields[0]] = true
		out[fields[0]] = parseCount(fields[1])
	}
	return out
}

// Header formats the sample for the Leakhound-Context response header: "key=value" pairs
// joined by "; ", in this order, each only when known:
//
//	goroutines=N; memory_current=BYTES; memory_max=BYTES|max; cpu_usage_usec=N;
//	cpu_nr_periods=N; cpu_nr_throttled=N; cpu_throttled_usec=N; pids_current=N;
//	threads=N; vm_rss=BYTES
func (s Sample) Header() string {
	parts := []string{"goroutines=" + strconv.Itoa(s.Goroutines)}
	add := func(k string, v *int64) {
		if v != nil {
			parts = append(parts, k+"="+strconv.FormatInt(*v, 10))
		}
	}
	if c := s.Cgroup; c != nil {
		add("memory_current", c.MemoryCurrent)
		if c.MemoryMaxUnlimited {
			parts = append(parts, "memory_max=max")
		} else {
			add("memory_max", c.MemoryMax)
		}
		add("cpu_usage_usec", c.CPUUsageUsec)
		add("cpu_nr_periods", c.CPUNrPeriods)
		add("cpu_nr_throttled", c.CPUNrThrottled)
		add("cpu_throttled_usec", c.CPUThrottledUsec)
		add("pids_current", c.PidsCurrent)
	}
	add("threads", s.Process.Threads)
	add("vm_rss", s.Process.VmRSSBytes)
	return strings.Join(parts, "; ")
}

// ParseHeader reads a Leakhound-Context header back into key → value (the inverse of
// Sample.Header, for clients and tests). "max" is returned as -1.
func ParseHeader(h string) (map[string]int64, error) {
	out := map[string]int64{}
	for _, part := range strings.Split(h, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("context header: %q is not key=value", part)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("context header: %q twice", k)
		}
		if v == "max" {
			out[k] = -1
			continue
		}
		n := parseCount(v)
		if n == nil {
			return nil, fmt.Errorf("context header: %s=%q is not a count", k, v)
		}
		out[k] = *n
	}
	if len(out) == 0 {
		return nil, errors.New("context header: empty")
	}
	return out, nil
}
