// Command agentleaky is leaky's sibling that exposes its profiles through the leakhound agent
// (../../../../agent) instead of net/http/pprof: the goroutine profiles, the container context
// and its Prometheus /metrics are served behind a bearer token read from a file, rate-limited,
// with the debug=2 fuse; nothing is on http.DefaultServeMux. Each leaked goroutine carries the
// trace and span ids of the request that leaked it (a W3C traceparent header, or ids made up
// for -leak) as pprof labels, through agent/correlate.
//
// It is its own Go module (a replace points at the agent), so tests/goprogs' module and the
// copies capture.sh makes of it stay as they were.
//
//	agentleaky -token-file F [-leak N] [-max-goroutines N] [-memory-limit BYTES] [-addr A]
//	           [-push HOST:PORT -push-token-file F [-push-interval D] [-namespace NS -pod POD]
//	            [-push-clock-start UNIX -push-clock-step D]
//	            [-push-tls-ca F [-push-tls-cert F -push-tls-key F]]]
//	first stdout line: listening on http://127.0.0.1:PORT
//
// With -push it also streams its snapshots to leakhound serve (agent/push): every
// -push-interval, and at each POST /push/capture (open); POST /push/stop stops the capturing
// (what is buffered is still sent); GET /push/stats is the pusher's counters (JSON).
// With -push-clock-start the snapshots' capture times are a simulated clock instead of the
// wall clock: the first capture at that Unix time, each next one -push-clock-step later
// (tests replay an hour of minutes in seconds; what is captured is the process as it is).
// With -push-tls-ca the push stream is TLS to a server whose certificate chains to that CA,
// with -push-tls-cert/-push-tls-key presenting a client certificate (mTLS); -push-token-file
// may then be left out.
//
// Endpoints: /debug/pprof/goroutine, /debug/pprof/goroutineleak, /debug/leakhound/context,
// /debug/leakhound/metrics, /metrics (all behind the token); /leaks (open: JSON started,
// goroutines, steady) and POST /api/orders?n=N (open: leaks N goroutines under the request's
// traceparent) are the service's own.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/leakhound/leakhound/agent"
	"github.com/leakhound/leakhound/agent/correlate"
	"github.com/leakhound/leakhound/agent/push"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

type leaker struct {
	mu      sync.Mutex
	started int
}

type orderResult struct{ id int }

// leakOrderResult blocks forever sending a result nobody reads: [chan send].
func leakOrderResult(results chan<- orderResult, ready chan<- struct{}) {
	ready <- struct{}{}
	results <- orderResult{id: 42}
}

// leak starts n leaking goroutines under ctx's trace ids, and returns once they run.
func (l *leaker) leak(ctx context.Context, n int) {
	ready := make(chan struct{})
	correlate.Do(ctx, func(context.Context) {
		for range n {
			go leakOrderResult(make(chan orderResult), ready)
		}
	}, "handler", "/api/orders")
	for range n {
		<-ready
	}
	l.mu.Lock()
	l.started += n
	l.mu.Unlock()
}

func main() {
	var (
		addr          = flag.String("addr", "127.0.0.1:0", "listen address; the bound address is printed as the first stdout line")
		tokenFile     = flag.String("token-file", "", "file holding the bearer token the agent requires (required)")
		leakN         = flag.Int("leak", 0, "leak N goroutines at start, each under a trace id of its own batch")
		maxGoroutines = flag.Int("max-goroutines", 0, "fuse: above this many goroutines debug=2 is served as debug=1 (0: the agent's default)")
		memoryLimit   = flag.Int64("memory-limit", 0, "fuse: memory limit in bytes instead of cgroup memory.max")
		cgroupDir     = flag.String("cgroup-dir", "", "cgroup v2 directory (default: the process's)")
		pushAddr      = flag.String("push", "", "push snapshots to leakhound serve's push listener at host:port (agent/push)")
		pushToken     = flag.String("push-token-file", "", "with -push: the bearer token's file")
		pushEvery     = flag.Duration("push-interval", 0, "with -push: capture every interval (0: only on POST /push/capture)")
		pushBuffer    = flag.Int("push-buffer", 0, "with -push: snapshots buffered at most (0: the agent's default)")
		namespace     = flag.String("namespace", "shop", "with -push: the snapshots' namespace")
		pod           = flag.String("pod", "orders-push", "with -push: the snapshots' pod")
		clockStart    = flag.Int64("push-clock-start", 0, "with -push: stamp the first capture at this Unix time (0: the wall clock)")
		clockStep     = flag.Duration("push-clock-step", time.Minute, "with -push-clock-start: the simulated time between captures")
		pushCA        = flag.String("push-tls-ca", "", "with -push: TLS, the server's CA (PEM)")
		pushCert      = flag.String("push-tls-cert", "", "with -push-tls-ca: the client certificate (PEM)")
		pushKey       = flag.String("push-tls-key", "", "with -push-tls-cert: its key (PEM)")
	)
	flag.Parse()
	if *tokenFile == "" {
		fmt.Fprintln(os.Stderr, "agentleaky: -token-file is required")
		os.Exit(2)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	h, err := agent.New(agent.Options{
		TokenFile: *tokenFile,
		Metrics:   promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		Fuse:      agent.FuseOptions{MaxGoroutines: *maxGoroutines, MemoryLimit: *memoryLimit},
		CgroupDir: *cgroupDir,
		// leakhound's ingest asks for several endpoints per pass; tests run passes back to back.
		RatePerSecond: 20,
		Burst:         40,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "agentleaky:", err)
		os.Exit(2)
	}

	l := &leaker{}
	mux := http.NewServeMux()
	h.Register(mux)
	mux.HandleFunc("GET /leaks", func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		started := l.started
		l.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"started": started, "goroutines": runtime.NumGoroutine(), "steady": true, "pid": os.Getpid(),
		})
	})
	if *pushAddr != "" {
		tlsConf, err := pushTLS(*pushCA, *pushCert, *pushKey)
		if err != nil {
			fmt.Fprintln(os.Stderr, "agentleaky:", err)
			os.Exit(2)
		}
		servePush(mux, *pushAddr, *pushToken, *pushEvery, *pushBuffer, *namespace, *pod, h.Sampler(), newClock(*clockStart, *clockStep), tlsConf)
	}
	prop := propagation.TraceContext{}
	mux.Handle("POST /api/orders", correlate.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n < 1 || n > 100_000 {
			http.Error(w, "n must be 1..100000", http.StatusBadRequest)
			return
		}
		l.leak(r.Context(), n)
		fmt.Fprintf(w, "{\"started\":%d}\n", n)
	})))
	// The tracing middleware's part: the incoming traceparent becomes the request's span context.
	root := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		mux.ServeHTTP(w, r.WithContext(ctx))
	})

	if *leakN > 0 {
		tid, _ := trace.TraceIDFromHex("0af7651916cd43dd8448eb211c80319c")
		sid, _ := trace.SpanIDFromHex("b7ad6b7169203331")
		sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
		l.leak(trace.ContextWithSpanContext(context.Background(), sc), *leakN)
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "agentleaky: listen:", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: root, ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("listening on http://%s\n", ln.Addr())
	_ = os.Stdout.Sync()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	select {
	case <-sig:
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	case err := <-serveErr:
		fmt.Fprintln(os.Stderr, "agentleaky: serve:", err)
		os.Exit(1)
	}
}

// clock is the pusher's: the wall clock, or a simulated one that a capture advances.
type clock struct {
	mu   sync.Mutex
	now  time.Time
	step time.Duration
}

// newClock returns nil for the wall clock (start 0).
func newClock(start int64, step time.Duration) *clock {
	if start <= 0 {
		return nil
	}
	return &clock{now: time.Unix(start, 0), step: step}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance() {
	c.mu.Lock()
	c.now = c.now.Add(c.step)
	c.mu.Unlock()
}

// pushTLS is the push stream's TLS configuration (nil without a CA).
func pushTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no CA certificate", caFile)
	}
	c := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// servePush starts the pusher and its test endpoints on mux.
func servePush(mux *http.ServeMux, addr, tokenFile string, every time.Duration, buffer int, ns, pod string, s *agent.Sampler, clk *clock, tlsConf *tls.Config) {
	o := push.Options{
		Addr: addr, TokenFile: tokenFile, Target: push.Target{Namespace: ns, Pod: pod}, TLS: tlsConf,
		Sampler: s, Buffer: buffer, BackoffMin: 20 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
	}
	if clk != nil {
		o.Now = clk.Now
	}
	p, err := push.New(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "agentleaky:", err)
		os.Exit(2)
	}
	go func() { _ = p.SendLoop(context.Background()) }()
	capture := func() {
		p.Capture()
		if clk != nil {
			clk.advance()
		}
	}
	stop := make(chan struct{})
	var once sync.Once
	if every > 0 {
		go func() {
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					capture()
				}
			}
		}()
	}
	mux.HandleFunc("POST /push/capture", func(w http.ResponseWriter, r *http.Request) {
		capture()
		_ = json.NewEncoder(w).Encode(p.Stats())
	})
	mux.HandleFunc("POST /push/stop", func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(stop) })
		_ = json.NewEncoder(w).Encode(p.Stats())
	})
	mux.HandleFunc("GET /push/stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(p.Stats())
	})
}
