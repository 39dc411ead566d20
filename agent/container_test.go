package agent

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// As the kernel writes them (cgroup v2, Linux 6.x).
const cpuStatFixture = `usage_usec 912345
user_usec 700000
system_usec 212345
core_sched.force_idle_usec 0
nr_periods 100
nr_throttled 7
throttled_usec 52000
nr_bursts 0
burst_usec 0
`

const procStatusFixture = `Name:	orders
Umask:	0022
State:	S (sleeping)
Tgid:	4242
Pid:	4242
VmPeak:	 1262512 kB
VmSize:	 1262512 kB
VmHWM:	   45000 kB
VmRSS:	   41024 kB
RssAnon:	   30000 kB
Threads:	12
SigQ:	0/63450
`

func writeCgroupFixture(t *testing.T, dir string) {
	t.Helper()
	write(t, filepath.Join(dir, "memory.current"), "73400320\n")
	write(t, filepath.Join(dir, "memory.max"), "268435456\n")
	write(t, filepath.Join(dir, "cpu.stat"), cpuStatFixture)
	write(t, filepath.Join(dir, "pids.current"), "14\n")
	write(t, filepath.Join(dir, "cgroup.controllers"), "cpuset cpu io memory pids\n")
}

func val(p *int64) int64 {
	if p == nil {
		return -999
	}
	return *p
}

func TestCgroupAndProcStatusFixtures(t *testing.T) {
	dir := t.TempDir()
	writeCgroupFixture(t, dir)
	status := filepath.Join(dir, "status")
	write(t, status, procStatusFixture)
	s := NewSampler(dir, status).Sample()
	c := s.Cgroup
	if c == nil {
		t.Fatal("no cgroup")
	}
	for name, tc := range map[string][2]int64{
		"memory.current":      {val(c.MemoryCurrent), 73400320},
		"memory.max":          {val(c.MemoryMax), 268435456},
		"cpu usage_usec":      {val(c.CPUUsageUsec), 912345},
		"cpu nr_periods":      {val(c.CPUNrPeriods), 100},
		"cpu nr_throttled":    {val(c.CPUNrThrottled), 7},
		"cpu throttled_usec":  {val(c.CPUThrottledUsec), 52000},
		"pids.current":        {val(c.PidsCurrent), 14},
		"status Threads":      {val(s.Process.Threads), 12},
		"status VmRSS, bytes": {val(s.Process.VmRSSBytes), 41024 * 1024},
	} {
		if tc[0] != tc[1] {
			t.Errorf("%s = %d, want %d", name, tc[0], tc[1])
		}
	}
	if c.MemoryMaxUnlimited {
		t.Error("unlimited")
	}
	want := "goroutines=" // then the fixture's values in order
	h := s.Header()
	if !strings.HasPrefix(h, want) || !strings.HasSuffix(h, "; memory_current=73400320; memory_max=268435456; cpu_usage_usec=912345; "+
		"cpu_nr_periods=100; cpu_nr_throttled=7; cpu_throttled_usec=52000; pids_current=14; threads=12; vm_rss=42008576") {
		t.Fatalf("header %q", h)
	}
	kv, err := ParseHeader(h)
	if err != nil || kv["vm_rss"] != 42008576 || kv["goroutines"] != int64(s.Goroutines) {
		t.Fatalf("%v %v", kv, err)
	}
}

func TestCgroupFilesThatDoNotParseAreUnknown(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "memory.current"), "-5\n")
	write(t, filepath.Join(dir, "memory.max"), "max\n")
	write(t, filepath.Join(dir, "cpu.stat"), "nr_throttled 7\nnr_throttled 8\nthrottled_usec 12abc\nnr_periods 99999999999999999999\n")
	write(t, filepath.Join(dir, "pids.current"), strings.Repeat("1", maxStatFile+1))
	status := filepath.Join(dir, "status")
	write(t, status, "Threads:\t12 13\nVmRSS:\t100 MB\n")
	s := NewSampler(dir, status).Sample()
	c := s.Cgroup
	for name, p := range map[string]*int64{
		"negative memory.current": c.MemoryCurrent, "memory.max max": c.MemoryMax,
		"duplicate key": c.CPUNrThrottled, "not a number": c.CPUThrottledUsec,
		"overflow": c.CPUNrPeriods, "too long a file": c.PidsCurrent, "missing key": c.CPUUsageUsec,
		"two values": s.Process.Threads, "unit not kB": s.Process.VmRSSBytes,
	} {
		if p != nil {
			t.Errorf("%s: %d, want unknown", name, *p)
		}
	}
	if !c.MemoryMaxUnlimited {
		t.Error("memory.max max is unlimited")
	}
	if h := s.Header(); !strings.Contains(h, "memory_max=max") || strings.Contains(h, "pids_current") {
		t.Errorf("header %q", h)
	}
	if kv, _ := ParseHeader(s.Header()); kv["memory_max"] != -1 {
		t.Errorf("max parses as %d", kv["memory_max"])
	}
	for _, bad := range []string{"", "goroutines", "a=1; a=2", "a=-1", "a=1;;b=2"} {
		if _, err := ParseHeader(bad); err == nil {
			t.Errorf("ParseHeader(%q) accepted", bad)
		}
	}
	// No files at all: nothing known, nothing made up.
	s = NewSampler(t.TempDir(), filepath.Join(dir, "nope")).Sample()
	if s.Cgroup.MemoryCurrent != nil || s.Process.Threads != nil || s.Header() != "goroutines="+strconv.Itoa(s.Goroutines) {
		t.Errorf("%+v %q", s, s.Header())
	}
}

func TestResolveCgroupDir(t *testing.T) {
	mount := t.TempDir()
	procCgroup := filepath.Join(t.TempDir(), "cgroup")
	ctr := filepath.Join(mount, "kubepods.slice", "pod1", "ctr")
	if err := os.MkdirAll(ctr, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(ctr, "memory.current"), "1\n")
	// A hybrid host lists v1 hierarchies before the v2 line.
	write(t, procCgroup, "4:memory:/x\n0::/kubepods.slice/pod1/ctr\n")
	if got := ResolveCgroupDir(procCgroup, mount); got != ctr {
		t.Fatalf("got %q, want %q", got, ctr)
	}
	// A cgroup namespace: "0::/" and the files at the mount's root.
	write(t, procCgroup, "0::/\n")
	if got := ResolveCgroupDir(procCgroup, mount); got != "" {
		t.Fatalf("no files at the root yet: %q", got)
	}
	write(t, filepath.Join(mount, "cgroup.controllers"), "memory\n")
	if got := ResolveCgroupDir(procCgroup, mount); got != mount {
		t.Fatalf("root: %q", got)
	}
	// A path that climbs stays under the mount.
	write(t, procCgroup, "0::/../../../etc\n")
	if got := ResolveCgroupDir(procCgroup, mount); got != mount {
		t.Fatalf("climbing path: %q", got)
	}
}
