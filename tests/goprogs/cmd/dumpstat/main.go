// Command dumpstat counts goroutines in captured goroutine dumps so that
// capture.sh can check the formats against each other and against what
// leaky says it leaked. It is an independent, deliberately simple reader
// (not leakhound's parser) used only to verify fixtures.
//
//	dumpstat FILE...   # *.pb.gz (debug=0), *debug1.txt, *debug2.txt / *.stderr.txt
//
// It prints one JSON object per file, keyed by file name.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/google/pprof/profile"
)

// keyFuncs maps a function that identifies a leak pattern's goroutine (or
// a notable runtime/http goroutine) to a short key. The first matching frame
// from the top of the stack wins.
var keyFuncs = []struct{ fn, key string }{
	{"main.leakChanSend", "chansend"},
	{"main.leakChanRecv", "chanrecv"},
	{"main.leakSelect", "select"},
	{"main.leakContext", "context"},
	{"main.leakMutex", "mutex"},
	{"main.leakWaitGroup", "waitgroup"},
	{"main.leakTicker", "ticker"},
	{"main.leakSleep", "sleep"},
	{"main.leakNilChan", "nilchan"},
	{"main.leakNoCases", "nocases"},
	{"main.streamHandler", "httpbody.server_handler"},
	{"net/http.(*persistConn).readLoop", "httpbody.client_readLoop"},
	{"net/http.(*persistConn).writeLoop", "httpbody.client_writeLoop"},
	{"net/http.(*connReader).backgroundRead", "http.server_backgroundRead"},
	{"main.benignBurstWorker", "burst"},
}

type stat struct {
	Format      string         `json:"format"`
	HeaderTotal *int           `json:"header_total,omitempty"` // "goroutine profile: total N"
	Goroutines  int            `json:"goroutines"`             // sum over records
	Records     int            `json:"records"`
	ByFunction  map[string]int `json:"by_function"`
	ByLabel     map[string]int `json:"by_pattern_label,omitempty"` // pprof label pattern=...
	Leaked      int            `json:"leaked_status,omitempty"`    // "(leaked)" in debug=2 headers
	WithLabels  int            `json:"headers_with_labels,omitempty"`
	CreatedBy   int            `json:"created_by_lines,omitempty"`
}

func classify(funcs []string) string {
	for _, f := range funcs {
		for _, k := range keyFuncs {
			if f == k.fn {
				return k.key
			}
		}
	}
	return "other"
}

func newStat(format string) *stat {
	return &stat{Format: format, ByFunction: map[string]int{}, ByLabel: map[string]int{}}
}

var (
	totalRe  = regexp.MustCompile(`^(\w+) profile: total (\d+)$`)
	recordRe = regexp.MustCompile(`^(\d+) @( 0x[0-9a-f]+)*$`)
	frameRe  = regexp.MustCompile(`^#\t0x[0-9a-f]+\t(\S+)\+0x[0-9a-f]+`)
	labelsRe = regexp.MustCompile(`"pattern":"([^"]*)"`)
	// Go <= 1.26 (GODEBUG=tracebacklabels=1): `goroutine 7 [select labels:{"k": "v"}]:`
	// Go 1.27: `goroutine 7 [select] {k: v, k2: "needs quoting"}:`
	gHeaderRe  = regexp.MustCompile(`^goroutine \d+ (gp=\S+ m=\S+ (mp=\S+ )?)?\[(.*)$`)
	d2LabelRes = []*regexp.Regexp{
		regexp.MustCompile(`"pattern": "([^"]*)"`),
		regexp.MustCompile(`[{ ]pattern: ([A-Za-z0-9./_]+)[,}]`),
	}
)

func readDebug1(path string) (*stat, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st := newStat("debug=1")
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var n int
	var funcs []string
	var label string
	flush := func() {
		if n > 0 {
			st.Records++
			st.Goroutines += n
			st.ByFunction[classify(funcs)] += n
			if label != "" {
				st.ByLabel[label] += n
			}
		}
		n, funcs, label = 0, nil, ""
	}
	for sc.Scan() {
		line := sc.Text()
		if m := totalRe.FindStringSubmatch(line); m != nil {
			t, _ := strconv.Atoi(m[2])
			st.HeaderTotal = &t
			st.Format = m[1] + " debug=1"
			continue
		}
		if m := recordRe.FindStringSubmatch(line); m != nil {
			flush()
			n, _ = strconv.Atoi(strings.Fields(line)[0])
			continue
		}
		if strings.HasPrefix(line, "# labels:") {
			if m := labelsRe.FindStringSubmatch(line); m != nil {
				label = m[1]
			}
			continue
		}
		if m := frameRe.FindStringSubmatch(line); m != nil {
			funcs = append(funcs, m[1])
		}
		if strings.Contains(line, "created by") {
			st.CreatedBy++
		}
	}
	flush()
	return st, sc.Err()
}

func readDebug2(path string) (*stat, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st := newStat("debug=2")
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	in := false
	var funcs []string
	var label string
	flush := func() {
		if in {
			st.Records++
			st.Goroutines++
			st.ByFunction[classify(funcs)]++
			if label != "" {
				st.ByLabel[label]++
			}
		}
		in, funcs, label = false, nil, ""
	}
	for sc.Scan() {
		line := sc.Text()
		if m := gHeaderRe.FindStringSubmatch(line); m != nil && strings.HasSuffix(line, ":") {
			flush()
			in = true
			if strings.Contains(m[3], " (leaked)") {
				st.Leaked++
			}
			if strings.Contains(m[3], "labels:{") || strings.Contains(m[3], "] {") {
				st.WithLabels++
			}
			for _, re := range d2LabelRes {
				if lm := re.FindStringSubmatch(m[3]); lm != nil {
					label = lm[1]
					break
				}
			}
			continue
		}
		if line == "" {
			flush()
			continue
		}
		if !in {
			continue
		}
		if strings.HasPrefix(line, "created by ") {
			st.CreatedBy++
			continue
		}
		if strings.HasPrefix(line, "\t") {
			continue
		}
		// "pkg.fn(args)" or "pkg.fn(...)"
		if i := strings.LastIndex(line, "("); i > 0 {
			funcs = append(funcs, line[:i])
		}
	}
	flush()
	return st, sc.Err()
}

func readProto(path string) (*stat, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		return nil, err
	}
	st := newStat("debug=0")
	for _, s := range p.Sample {
		n := int(s.Value[0])
		var funcs []string
		for _, loc := range s.Location {
			// Lines are innermost first within a location.
			for _, ln := range loc.Line {
				if ln.Function != nil {
					funcs = append(funcs, ln.Function.Name)
				}
			}
		}
		st.Records++
		st.Goroutines += n
		st.ByFunction[classify(funcs)] += n
		if v := s.Label["pattern"]; len(v) > 0 {
			st.ByLabel[v[0]] += n
		}
	}
	return st, nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: dumpstat FILE...")
		os.Exit(2)
	}
	out := map[string]*stat{}
	var names []string
	for _, path := range os.Args[1:] {
		var st *stat
		var err error
		base := filepath.Base(path)
		switch {
		case strings.HasSuffix(base, ".pb.gz"):
			st, err = readProto(path)
		case strings.Contains(base, "debug1"):
			st, err = readDebug1(path)
		default:
			st, err = readDebug2(path)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "dumpstat: %s: %v\n", path, err)
			os.Exit(1)
		}
		out[base] = st
		names = append(names, base)
	}
	sort.Strings(names)
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		os.Exit(1)
	}
}
