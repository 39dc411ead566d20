// Command leaky is a small but realistic Go service that leaks goroutines on
// demand, by pattern, at a known rate. It serves /debug/pprof/ and /metrics
// (Prometheus default registry: go + process collectors) like a production
// service, plus a few ordinary endpoints, so leakhound can be tested against
// real goroutine dumps.
//
// See ../../README.md for flags and endpoints.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"math"
	"net"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof/ on http.DefaultServeMux
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

var (
	leaksStarted = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "leaky_leaks_started_total",
		Help: "Leaks started, by pattern.",
	}, []string{"pattern"})
	httpRequests = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "leaky_http_requests_total",
		Help: "HTTP requests served, by handler.",
	}, []string{"handler"})
	burstActive = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "leaky_burst_goroutines",
		Help: "Benign burst goroutines currently alive.",
	})
)

// leakSpec is one entry of -leak: a pattern, an optional total and an
// optional rate. total < 0 means unbounded; rate == 0 means all at once.
type leakSpec struct {
	p     *pattern
	total int
	rate  float64 // per second
}

// parseLeakSpecs parses "chansend:5,httpbody:2/s,select:10@1/s".
//
//	P:N       N leaks of pattern P, started at once
//	P:R/s     R leaks per second (R may be fractional; /m for per minute), forever
//	P:N@R/s   N leaks in total, at R per second
func parseLeakSpecs(s string) ([]leakSpec, error) {
	var out []leakSpec
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		name, spec, ok := strings.Cut(item, ":")
		if !ok {
			return nil, fmt.Errorf("leak %q: want PATTERN:N, PATTERN:R/s or PATTERN:N@R/s", item)
		}
		p, ok := patternByName(name)
		if !ok {
			return nil, fmt.Errorf("leak %q: unknown pattern %q (known: %s)", item, name, patternNames())
		}
		ls := leakSpec{p: p, total: -1}
		countPart, ratePart := spec, ""
		if strings.Contains(spec, "/") {
			countPart, ratePart = "", spec
			if c, r, ok := strings.Cut(spec, "@"); ok {
				countPart, ratePart = c, r
			}
		}
		if countPart != "" {
			n, err := strconv.Atoi(countPart)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("leak %q: bad count %q", item, countPart)
			}
			ls.total = n
		}
		if ratePart != "" {
			num, unit, _ := strings.Cut(ratePart, "/")
			r, err := strconv.ParseFloat(num, 64)
			if err != nil || r <= 0 || math.IsInf(r, 0) {
				return nil, fmt.Errorf("leak %q: bad rate %q", item, ratePart)
			}
			switch unit {
			case "s":
			case "m":
				r /= 60
			default:
				return nil, fmt.Errorf("leak %q: rate unit must be /s or /m", item)
			}
			ls.rate = r
		}
		out = append(out, ls)
	}
	return out, nil
}

func patternNames() string {
	var names []string
	for _, p := range patterns {
		names = append(names, p.name)
	}
	return strings.Join(names, ",")
}

// leaker starts leaks and counts them.
type leaker struct {
	env *env

	mu      sync.Mutex
	started map[string]int
	failed  map[string]int
	pending int // configured finite leaks not yet started
	bursts  int // benign burst goroutines alive
}

func newLeaker(e *env) *leaker {
	return &leaker{env: e, started: map[string]int{}, failed: map[string]int{}}
}

// leak starts n leaks of pattern p. Each goroutine gets the pprof labels
// handler=<endpoint>, pattern=<name> and route=<"METHOD /template/{x}">,
// independent of the caller's labels. route has a space and braces on
// purpose: Go 1.27 quotes such values in debug=2 goroutine headers.
func (l *leaker) leak(p *pattern, n int) (int, error) {
	started := 0
	var firstErr error
	for i := 0; i < n; i++ {
		labels := pprof.Labels("handler", p.handler, "pattern", p.name, "route", p.route)
		var err error
		pprof.Do(context.Background(), labels, func(ctx context.Context) {
			err = p.spawn(ctx, l.env)
		})
		l.mu.Lock()
		if err != nil {
			l.failed[p.name]++
		} else {
			l.started[p.name]++
			started++
		}
		l.mu.Unlock()
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		leaksStarted.WithLabelValues(p.name).Inc()
	}
	return started, firstErr
}

// run drives one -leak spec to completion (or forever).
func (l *leaker) run(ls leakSpec) {
	if ls.rate == 0 {
		n := ls.total
		if n < 0 {
			n = 1
		}
		if _, err := l.leak(ls.p, n); err != nil {
			log.Printf("leak %s: %v", ls.p.name, err)
		}
		l.donePending(n)
		return
	}
	interval := time.Duration(float64(time.Second) / ls.rate)
	next := time.Now()
	for i := 0; ls.total < 0 || i < ls.total; i++ {
		time.Sleep(time.Until(next))
		next = next.Add(interval)
		if _, err := l.leak(ls.p, 1); err != nil {
			log.Printf("leak %s: %v", ls.p.name, err)
		}
		if ls.total >= 0 {
			l.donePending(1)
		}
	}
}

func (l *leaker) donePending(n int) {
	l.mu.Lock()
	l.pending -= n
	l.mu.Unlock()
}

// burst starts n benign goroutines that finish after d.
func (l *leaker) burst(n int, d time.Duration) {
	l.mu.Lock()
	l.bursts += n
	l.mu.Unlock()
	burstActive.Add(float64(n))
	for i := 0; i < n; i++ {
		go benignBurstWorker(l, d)
	}
}

func benignBurstWorker(l *leaker, d time.Duration) {
	time.Sleep(d)
	burstActive.Dec()
	l.mu.Lock()
	l.bursts--
	l.mu.Unlock()
}

type leaksReport struct {
	Started    map[string]int    `json:"started"`
	Failed     map[string]int    `json:"failed,omitempty"`
	Pending    int               `json:"pending"`
	Steady     bool              `json:"steady"` // no finite leak pending, no burst alive
	Bursts     int               `json:"burst_goroutines"`
	Goroutines int               `json:"goroutines"` // runtime.NumGoroutine()
	GoVersion  string            `json:"go_version"`
	Patterns   []string          `json:"patterns"`
	HandlerOf  map[string]string `json:"handler_label"`
	RouteOf    map[string]string `json:"route_label"`
	Unbounded  bool              `json:"unbounded"` // some -leak spec runs forever
	PID        int               `json:"pid"`
}

func (l *leaker) report(unbounded bool) leaksReport {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := leaksReport{
		Started:   map[string]int{},
		Pending:   l.pending,
		Bursts:    l.bursts,
		GoVersion: runtime.Version(),
		HandlerOf: map[string]string{},
		RouteOf:   map[string]string{},
		Unbounded: unbounded,
		PID:       os.Getpid(),
	}
	for k, v := range l.started {
		r.Started[k] = v
	}
	if len(l.failed) > 0 {
		r.Failed = map[string]int{}
		for k, v := range l.failed {
			r.Failed[k] = v
		}
	}
	for _, p := range patterns {
		r.Patterns = append(r.Patterns, p.name)
		r.HandlerOf[p.name] = p.handler
		r.RouteOf[p.name] = p.route
	}
	sort.Strings(r.Patterns)
	r.Steady = l.pending == 0
	r.Goroutines = runtime.NumGoroutine()
	return r
}

// instrument counts requests and, like label middleware in many services,
// runs the handler under the pprof label handler=<path>.
func instrument(path string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpRequests.WithLabelValues(path).Inc()
		pprof.Do(r.Context(), pprof.Labels("handler", path), func(ctx context.Context) {
			h(w, r.WithContext(ctx))
		})
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func routes(l *leaker, unbounded func() bool) {
	mux := http.DefaultServeMux // net/http/pprof registered /debug/pprof/ here
	mux.Handle("/metrics", promhttp.Handler())
	mux.Handle("/healthz", instrument("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	}))
	mux.Handle("/api/orders", instrument("/api/orders", ordersHandler))
	mux.Handle("/api/users", instrument("/api/users", usersHandler))
	mux.Handle("/api/stream", instrument("/api/stream", streamHandler))
	mux.Handle("/leaks", instrument("/leaks", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, l.report(unbounded()))
	}))
	mux.Handle("/leak", instrument("/leak", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "use POST /leak?pattern=P&n=N", http.StatusMethodNotAllowed)
			return
		}
		p, ok := patternByName(r.URL.Query().Get("pattern"))
		if !ok {
			http.Error(w, "unknown pattern; known: "+patternNames(), http.StatusBadRequest)
			return
		}
		n := 1
		if s := r.URL.Query().Get("n"); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil || v < 0 || v > 100000 {
				http.Error(w, "n must be an integer in [0, 100000]", http.StatusBadRequest)
				return
			}
			n = v
		}
		started, err := l.leak(p, n)
		resp := map[string]any{"pattern": p.name, "requested": n, "started": started}
		if err != nil {
			resp["error"] = err.Error()
			writeJSON(w, http.StatusInternalServerError, resp)
			return
		}
		writeJSON(w, http.StatusOK, resp)
	}))
	mux.Handle("/burst", instrument("/burst", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "use POST /burst?n=N&for=3s", http.StatusMethodNotAllowed)
			return
		}
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n < 0 || n > 1000000 {
			http.Error(w, "n must be an integer in [0, 1000000]", http.StatusBadRequest)
			return
		}
		d := 3 * time.Second
		if s := r.URL.Query().Get("for"); s != "" {
			if d, err = time.ParseDuration(s); err != nil {
				http.Error(w, "bad for: "+err.Error(), http.StatusBadRequest)
				return
			}
		}
		l.burst(n, d)
		writeJSON(w, http.StatusOK, map[string]any{"started": n, "for": d.String()})
	}))
}

type order struct {
	ID     int     `json:"id"`
	Status string  `json:"status"`
	Total  float64 `json:"total"`
}

func ordersHandler(w http.ResponseWriter, r *http.Request) {
	orders := make([]order, 0, 3)
	for i := 1; i <= 3; i++ {
		orders = append(orders, order{ID: 1000 + i, Status: "paid", Total: float64(i) * 19.99})
	}
	writeJSON(w, http.StatusOK, orders)
}

func usersHandler(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, []map[string]string{{"id": "u1", "name": "ada"}, {"id": "u2", "name": "grace"}})
}

func main() {
	var (
		addr      = flag.String("addr", "127.0.0.1:0", "listen address; the bound address is printed as the first stdout line")
		leakFlag  = flag.String("leak", "", "leaks to start: PATTERN:N (N now), PATTERN:R/s (forever), PATTERN:N@R/s; comma separated. Patterns: "+patternNames())
		burstN    = flag.Int("burst", 0, "benign burst: start N goroutines that finish after -burst-for")
		burstFor  = flag.Duration("burst-for", 3*time.Second, "how long burst goroutines live")
		doPanic   = flag.Bool("panic", false, "panic once the -leak specs are done (stderr gets a panic trace; set GOTRACEBACK=all for every goroutine)")
		deadlock  = flag.Bool("deadlock", false, "start the -leak specs without a server (network/timer patterns skipped), then block main so the runtime reports 'all goroutines are asleep - deadlock!'")
		panicWait = flag.Duration("panic-after", 200*time.Millisecond, "with -panic: extra wait after setup before panicking")
	)
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	specs, err := parseLeakSpecs(*leakFlag)
	if err != nil {
		fmt.Fprintln(os.Stderr, "leaky:", err)
		os.Exit(2)
	}
	unbounded := false
	for _, s := range specs {
		if s.total < 0 && s.rate > 0 {
			unbounded = true
		}
	}

	if *deadlock {
		runDeadlock(specs)
		return
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "leaky: listen:", err)
		os.Exit(1)
	}
	base := "http://" + ln.Addr().String()
	// An http.Client with no timeout: the httpbody leak depends on it.
	e := &env{baseURL: base, client: &http.Client{Transport: &http.Transport{}}}
	l := newLeaker(e)
	routes(l, func() bool { return unbounded })
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("listening on %s\n", base)
	_ = os.Stdout.Sync()

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	for _, s := range specs {
		if s.total > 0 {
			l.mu.Lock()
			l.pending += s.total
			l.mu.Unlock()
		}
	}
	var wg sync.WaitGroup
	for _, s := range specs {
		if s.total == 0 {
			continue
		}
		if s.total > 0 {
			wg.Add(1)
			go func() { defer wg.Done(); l.run(s) }()
		} else {
			go l.run(s)
		}
	}
	if *burstN > 0 {
		l.burst(*burstN, *burstFor)
	}

	if *doPanic {
		wg.Wait()
		time.Sleep(*panicWait)
		panic(fmt.Sprintf("leaky: requested panic (-panic) with %d goroutines", runtime.NumGoroutine()))
	}

	// SIGINT/SIGTERM shut down gracefully; SIGQUIT keeps Go's default
	// (dump all goroutines to stderr, exit 2).
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	select {
	case s := <-sig:
		log.Printf("leaky: %v, shutting down", s)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx) // leaked streams keep their conns; Shutdown times out
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "leaky: serve:", err)
			os.Exit(1)
		}
	}
}

// runDeadlock starts the leaks that do not involve timers or the network
// (those keep the runtime's deadlock detector quiet), then blocks main on a
// channel nobody sends on. No server, no signal.Notify, no timers.
func runDeadlock(specs []leakSpec) {
	l := newLeaker(&env{})
	for _, s := range specs {
		if s.p.noDeadlock {
			fmt.Fprintf(os.Stderr, "leaky: -deadlock: skipping pattern %s (needs timers or network)\n", s.p.name)
			continue
		}
		n := s.total
		if n < 0 {
			n = 1
		}
		if _, err := l.leak(s.p, n); err != nil {
			fmt.Fprintln(os.Stderr, "leaky:", err)
		}
	}
	fmt.Printf("deadlock mode: %d goroutines, blocking main\n", runtime.NumGoroutine())
	waitForShutdown(make(chan struct{}))
}

func waitForShutdown(done <-chan struct{}) {
	<-done
}
