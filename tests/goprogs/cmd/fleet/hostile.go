package main

// Hostile targets: real HTTP servers that misbehave the ways a fleet's pods (or whatever sits
// at their address) can, for leakhound's live-ingest tests and benchmark.
//
//	endless     every path answers 200 and never ends: /metrics an ever-growing list of
//	            series, the goroutine profiles ever-new stacks in the smallest records the
//	            parsers accept (their worst case: a group of some 500 bytes per ~25 bytes)
//	endlessdump /metrics answers 404 at once, the goroutine profiles never end as above (an
//	            endless /metrics can take a slow client its whole timeout before the dumps start)
//	drip        every path answers 200, then one byte a second
//	gzipbomb    every path answers Content-Encoding: gzip, a stream of zeros that never ends
//	            (a few KB on the wire per 64 MiB decoded)
//	headers     a 200 status line, then header lines that never end
//	badmetrics  a malformed /metrics (one line is not a sample), and the real goroutine
//	            profile: up, but its metrics are an error

import (
	"bufio"
	"bytes"
	"compress/flate"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

var hostileKinds = []string{"endless", "endlessdump", "drip", "gzipbomb", "headers", "badmetrics"}

// hostileModes parses MODE=N,... and spreads the hostile targets evenly over n targets,
// the modes interleaved; modes[i] is "" for a well-behaved target.
func hostileModes(spec string, n int) ([]string, error) {
	counts := map[string]int{}
	total := 0
	if spec != "" {
		for _, part := range strings.Split(spec, ",") {
			k, v, ok := strings.Cut(part, "=")
			c, err := strconv.Atoi(v)
			if !ok || err != nil || c < 0 {
				return nil, fmt.Errorf("-hostile %q: write MODE=N,...", spec)
			}
			known := false
			for _, h := range hostileKinds {
				known = known || h == k
			}
			if !known {
				return nil, fmt.Errorf("-hostile: unknown mode %q (%v)", k, hostileKinds)
			}
			counts[k] += c
			total += c
		}
	}
	if total > n {
		return nil, fmt.Errorf("-hostile: %d hostile targets of %d", total, n)
	}
	var order []string
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for len(order) < total {
		for _, k := range keys {
			if counts[k] > 0 {
				order = append(order, k)
				counts[k]--
			}
		}
	}
	modes := make([]string, n)
	for j, m := range order {
		modes[j*n/total] = m
	}
	return modes, nil
}

func hostileHandler(mode string, metrics, debug1, debug2 []byte) http.Handler {
	switch mode {
	case "endless":
		return http.HandlerFunc(endless)
	case "endlessdump":
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/metrics" {
				http.NotFound(w, r)
				return
			}
			endless(w, r)
		})
	case "drip":
		return http.HandlerFunc(drip)
	case "gzipbomb":
		bombOnce.Do(makeBombBlock)
		return http.HandlerFunc(gzipBomb)
	case "headers":
		return http.HandlerFunc(hugeHeaders)
	default:
		return badMetrics(metrics, debug1, debug2)
	}
}

func endless(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	bw := bufio.NewWriterSize(w, 64<<10)
	var line []byte
	var write func(i int) error
	switch {
	case r.URL.Path == "/metrics":
		bw.WriteString("# TYPE go_goroutines gauge\ngo_goroutines 7\n")
		write = func(i int) error {
			line = append(line[:0], "hostile_series{i=\""...)
			line = strconv.AppendInt(line, int64(i), 10)
			line = append(line, "\"} 1\n"...)
			_, err := bw.Write(line)
			return err
		}
	case r.URL.Query().Get("debug") == "2":
		write = func(i int) error {
			line = append(line[:0], "goroutine "...)
			line = strconv.AppendInt(line, int64(i+1), 10)
			line = append(line, " [a]:\nf"...)
			line = strconv.AppendInt(line, int64(i), 10)
			line = append(line, "()\n\t/a:1\n\n"...)
			_, err := bw.Write(line)
			return err
		}
	default:
		name := "goroutine"
		if strings.Contains(r.URL.Path, "goroutineleak") {
			name = "goroutineleak"
		}
		fmt.Fprintf(bw, "%s profile: total 1000000\n", name)
		write = func(i int) error {
			line = append(line[:0], "1 @ 0x1\n#\t0x1\tf"...)
			line = strconv.AppendInt(line, int64(i), 10)
			line = append(line, "\t/a:1\n\n"...)
			_, err := bw.Write(line)
			return err
		}
	}
	for i := 0; ; i++ {
		if write(i) != nil {
			return // the client hung up
		}
	}
}

func drip(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	f, _ := w.(http.Flusher)
	for i := 0; i < 3600; i++ {
		if _, err := w.Write([]byte("#")); err != nil {
			return
		}
		if f != nil {
			f.Flush()
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// bombBlock is 64 MiB of zeros deflated and sync-flushed: it ends on a byte boundary and
// refers back only to zeros, so repeating it continues one valid deflate stream of zeros.
var (
	bombBlock []byte
	bombOnce  sync.Once
)

func makeBombBlock() {
	var b bytes.Buffer
	fw, _ := flate.NewWriter(&b, flate.BestCompression)
	zeros := make([]byte, 1<<20)
	for i := 0; i < 64; i++ {
		fw.Write(zeros)
	}
	fw.Flush()
	bombBlock = b.Bytes()
}

func gzipBomb(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Encoding", "gzip")
	w.WriteHeader(http.StatusOK)
	// A gzip member header (no name, no time), then deflate blocks that never reach a final one.
	if _, err := w.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}); err != nil {
		return
	}
	for {
		if _, err := w.Write(bombBlock); err != nil {
			return
		}
	}
}

func hugeHeaders(w http.ResponseWriter, r *http.Request) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "no hijack", http.StatusInternalServerError)
		return
	}
	conn, bw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	bw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n")
	pad := strings.Repeat("a", 1000)
	for i := 0; ; i++ {
		if _, err := fmt.Fprintf(bw, "X-Pad-%d: %s\r\n", i, pad); err != nil {
			return
		}
		if i%64 == 0 && bw.Flush() != nil {
			return
		}
	}
}

func badMetrics(metrics, debug1, debug2 []byte) http.Handler {
	// The real exposition with one line that is not a sample, after its first lines.
	lines := bytes.SplitAfterN(metrics, []byte("\n"), 4)
	var bad bytes.Buffer
	for i, l := range lines {
		if i == 3 {
			bad.WriteString("this line is not a metric\n")
		}
		bad.Write(l)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Write(bad.Bytes())
	})
	mux.HandleFunc("/debug/pprof/goroutine", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if r.URL.Query().Get("debug") == "2" {
			w.Write(debug2)
			return
		}
		w.Write(debug1)
	})
	return mux
}
