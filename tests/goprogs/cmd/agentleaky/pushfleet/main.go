// Command pushfleet is the push bench's fleet (benches/push_fleet.rs): N agents as goroutines
// of one process, each with its own agent/push Pusher (its own gRPC connection and stream, its
// own pod name) capturing every -interval (staggered over the interval) into one
// leakhound serve, and its own pprof endpoint (bearer token) on a listener of its own, so that
// a pull pass of leakhound ingest can scrape the same N targets in the same run. Both sides
// send one shared capture of this process's goroutine profile, refreshed every second:
// 1,000 agents of one process each stopping the world for a profile of everyone's goroutines
// would measure this process, not leakhound.
//
//	pushfleet -n 1000 -push HOST:PORT -push-token-file F -token-file F -interval 10s -duration 60s -targets FILE
//
// It writes the targets file (pods fleet-0..N-1, namespace bench), prints "ready", pushes for
// -duration, stops capturing, waits until every snapshot is acknowledged (or 5 minutes), and
// prints one JSON line: snapshots, acked, dropped, seconds, p50/p99/max acknowledgement latency
// (capture to acknowledgement) in ms. Then it keeps serving the handlers until stdin closes.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/leakhound/leakhound/agent"
	"github.com/leakhound/leakhound/agent/push"
)

func main() {
	n := flag.Int("n", 1000, "agents")
	addr := flag.String("push", "", "serve's push listener")
	pushToken := flag.String("push-token-file", "", "serve's token")
	token := flag.String("token-file", "", "the handlers' token")
	interval := flag.Duration("interval", 10*time.Second, "capture interval per agent")
	duration := flag.Duration("duration", 60*time.Second, "how long to push")
	targetsFile := flag.String("targets", "", "write the pull targets here")
	flag.Parse()

	type target struct {
		URL   string `json:"url"`
		NS    string `json:"namespace"`
		Pod   string `json:"pod"`
		Token string `json:"bearer_token_file"`
	}
	var (
		mu        sync.Mutex
		latencies []time.Duration
	)
	sampler := agent.NewSampler("", "")
	// One capture of this process's profile a second, shared by every agent: 1,000 agents of
	// one process each stopping the world for a profile of everyone's goroutines would
	// measure this process, not serve (each real agent profiles its own small process).
	var (
		profMu sync.RWMutex
		prof   []byte
	)
	refresh := func() {
		var b bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
		profMu.Lock()
		prof = b.Bytes()
		profMu.Unlock()
	}
	refresh()
	go func() {
		for range time.Tick(time.Second) {
			refresh()
		}
	}()
	writeProfile := func(w io.Writer, _ int) error {
		profMu.RLock()
		defer profMu.RUnlock()
		_, err := w.Write(prof)
		return err
	}
	tb, err := os.ReadFile(*token)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	tok := strings.TrimSpace(string(tb))
	targets := make([]target, *n)
	pushers := make([]*push.Pusher, *n)
	for i := range *n {
		// The pull side serves the same shared capture (agent.Handler would profile this whole
		// process at each request, as 1,000 real services would not), behind the same token.
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer "+tok {
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			if r.URL.Path != "/debug/pprof/goroutine" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_ = writeProfile(w, 1)
		})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		go func() { _ = (&http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}).Serve(ln) }()
		pod := fmt.Sprintf("fleet-%d", i)
		targets[i] = target{URL: "http://" + ln.Addr().String(), NS: "bench", Pod: pod, Token: *token}
		p, err := push.New(push.Options{
			Addr: *addr, TokenFile: *pushToken, Target: push.Target{Namespace: "bench", Pod: pod},
			Interval: *interval, NoDebug2: true, Sampler: sampler, WriteProfile: writeProfile,
			OnAck: func(_ uint64, d time.Duration) {
				mu.Lock()
				latencies = append(latencies, d)
				mu.Unlock()
			},
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		pushers[i] = p
	}
	b, _ := json.Marshal(targets)
	if err := os.WriteFile(*targetsFile, b, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("ready")

	ctx, stopSending := context.WithCancel(context.Background())
	captureCtx, stopCapturing := context.WithTimeout(context.Background(), *duration)
	start := time.Now()
	var wg sync.WaitGroup
	for i, p := range pushers {
		go func() { _ = p.SendLoop(ctx) }()
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Staggered: the fleet's captures spread over the interval.
			select {
			case <-captureCtx.Done():
				return
			case <-time.After(time.Duration(i) * *interval / time.Duration(len(pushers))):
			}
			t := time.NewTicker(*interval)
			defer t.Stop()
			for {
				p.Capture()
				select {
				case <-captureCtx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	wg.Wait()
	stopCapturing()
	flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	var snapshots, ackedN, dropped uint64
	for _, p := range pushers {
		_ = p.Flush(flushCtx)
		s := p.Stats()
		snapshots += s.Captured
		ackedN += s.Acked
		dropped += s.Dropped
	}
	cancel()
	secs := time.Since(start).Seconds()
	stopSending()
	mu.Lock()
	slices.Sort(latencies)
	q := func(f float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		return float64(latencies[min(len(latencies)-1, int(f*float64(len(latencies))))].Microseconds()) / 1000
	}
	out, _ := json.Marshal(map[string]any{
		"agents": len(pushers), "snapshots": snapshots, "acked": ackedN, "dropped": dropped,
		"seconds": secs, "p50_ms": q(0.50), "p99_ms": q(0.99), "max_ms": q(1.0),
	})
	mu.Unlock()
	fmt.Println(string(out))
	_, _ = io.Copy(io.Discard, os.Stdin)
}
