package agent

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Response headers the handler sets.
const (
	// HeaderFuse is set on every debug=2 request: see Decision.Header.
	HeaderFuse = "Leakhound-Fuse"
	// HeaderContext is set on every profile response: see Sample.Header.
	HeaderContext = "Leakhound-Context"
)

// Options configure a Handler. Exactly one way to authenticate is required: Token,
// TokenFile, ClientCert (with a tls.Config from TLSConfig), or InsecureNoAuth stated
// explicitly.
type Options struct {
	// Token is the bearer token a client must send ("Authorization: Bearer TOKEN").
	Token string
	// TokenFile holds the token (surrounding whitespace trimmed). It is read again when its
	// size or modification time changes, so a rotated Kubernetes Secret takes effect without a
	// restart. A file that cannot be read (or is empty) denies every request.
	TokenFile string
	// ClientCert accepts a client whose TLS certificate the server verified (the server's
	// tls.Config must verify client certificates: TLSConfig does). With a token as well,
	// either is enough.
	ClientCert bool
	// InsecureNoAuth serves without credentials: local development and tests only.
	InsecureNoAuth bool

	// PprofPrefix is where the profiles are served (default "/debug/pprof"): PREFIX/goroutine
	// and PREFIX/goroutineleak, ?debug=0|1|2 as net/http/pprof.
	PprofPrefix string
	// AgentPrefix is where the agent's own endpoints are (default "/debug/leakhound"):
	// PREFIX/context (container context, JSON) and PREFIX/metrics (the agent's counters).
	AgentPrefix string
	// Metrics, when set, is served at MetricsPath (default "/metrics") behind the same
	// authentication and rate limit: the service's own Prometheus handler.
	Metrics     http.Handler
	MetricsPath string

	// RatePerSecond and Burst size each client's token bucket (defaults 2/s and 10). A client
	// is its verified certificate's subject when it has one, else its remote IP address (put
	// the handler behind no proxy that hides it). MaxClients bounds the table (default 4096).
	RatePerSecond float64
	Burst         int
	MaxClients    int

	// Fuse bounds debug=2.
	Fuse FuseOptions

	// CgroupDir is the cgroup v2 directory (default: resolved from /proc/self/cgroup under
	// /sys/fs/cgroup). ProcStatus is the status file (default /proc/self/status).
	CgroupDir  string
	ProcStatus string

	// now is the clock (tests).
	now func() time.Time
}

// Handler serves the profiles leakhound reads, safely. See New.
type Handler struct {
	opts     Options
	token    *tokenSource
	limiter  *limiter
	sampler  *Sampler
	counters *counters
	// fullDump holds one slot: one debug=2 dump at a time.
	fullDump chan struct{}
}

// New returns a Handler. It does not register itself anywhere: mount it with Register, or
// serve it on its own listener (http.Server{Handler: h}). An error says what is
// misconfigured.
func New(o Options) (*Handler, error) {
	ways := 0
	if o.Token != "" {
		ways++
	}
	if o.TokenFile != "" {
		ways++
	}
	if ways > 1 {
		return nil, errors.New("agent: Token and TokenFile are exclusive")
	}
	if ways == 0 && !o.ClientCert && !o.InsecureNoAuth {
		return nil, errors.New("agent: no authentication: set Token, TokenFile or ClientCert (or InsecureNoAuth for local use)")
	}
	if o.InsecureNoAuth && (ways > 0 || o.ClientCert) {
		return nil, errors.New("agent: InsecureNoAuth with credentials configured")
	}
	if o.PprofPrefix == "" {
		o.PprofPrefix = "/debug/pprof"
	}
	if o.AgentPrefix == "" {
		o.AgentPrefix = "/debug/leakhound"
	}
	if o.MetricsPath == "" {
		o.MetricsPath = "/metrics"
	}
	for _, p := range []string{o.PprofPrefix, o.AgentPrefix, o.MetricsPath} {
		if !strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
			return nil, fmt.Errorf("agent: path %q must start and must not end with /", p)
		}
	}
	if o.RatePerSecond == 0 {
		o.RatePerSecond = 2
	}
	if o.Burst == 0 {
		o.Burst = 10
	}
	if o.MaxClients == 0 {
		o.MaxClients = 4096
	}
	if o.RatePerSecond < 0 || o.Burst < 1 || o.MaxClients < 1 {
		return nil, errors.New("agent: RatePerSecond, Burst and MaxClients must be positive")
	}
	if o.now == nil {
		o.now = time.Now
	}
	h := &Handler{
		opts:     o,
		limiter:  newLimiter(o.RatePerSecond, o.Burst, o.MaxClients, o.now),
		sampler:  NewSampler(o.CgroupDir, o.ProcStatus),
		counters: newCounters(),
		fullDump: make(chan struct{}, 1),
	}
	switch {
	case o.Token != "":
		h.token = staticToken(o.Token)
	case o.TokenFile != "":
		h.token = &tokenSource{path: o.TokenFile}
		if _, err := h.token.get(); err != nil {
			return nil, fmt.Errorf("agent: token file: %w", err)
		}
	}
	return h, nil
}

// Register mounts the handler's endpoints on mux (never on http.DefaultServeMux unless that
// is the mux passed).
func (h *Handler) Register(mux *http.ServeMux) {
	mux.Handle(h.opts.PprofPrefix+"/", h)
	mux.Handle(h.opts.AgentPrefix+"/", h)
	if h.opts.Metrics != nil {
		mux.Handle(h.opts.MetricsPath, h)
	}
}

// RegisterDefault mounts the endpoints on http.DefaultServeMux: only when asked, because
// anything on the default mux is served by every server a program starts with a nil handler.
func (h *Handler) RegisterDefault() { h.Register(http.DefaultServeMux) }

// Sampler is the handler's container-context sampler.
func (h *Handler) Sampler() *Sampler { return h.sampler }

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush passes through, so a passed-through metrics handler can stream.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (h *Handler) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w := &statusWriter{ResponseWriter: rw}
	endpoint := "unknown"
	defer func() {
		code := w.code
		if code == 0 {
			code = http.StatusOK
		}
		h.counters.add("leakhound_agent_requests_total", endpoint, strconv.Itoa(code), 1)
	}()
	w.Header().Set("Cache-Control", "no-store")

	id := clientIdentity(r, h.opts.ClientCert)
	if ok, wait := h.limiter.allow(id); !ok {
		h.counters.add("leakhound_agent_denied_total", "rate_limited", "", 1)
		secs := int(wait / time.Second)
		if wait%time.Second != 0 {
			secs++
		}
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
		http.Error(w, "rate limited", http.StatusTooManyRequests)
		return
	}
	if reason, ok := h.authenticate(r); !ok {
		h.counters.add("leakhound_agent_denied_total", reason, "", 1)
		w.Header().Set("WWW-Authenticate", `Bearer realm="leakhound-agent"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	switch p := r.URL.Path; {
	case p == h.opts.PprofPrefix+"/goroutine":
		endpoint = "goroutine"
		h.serveProfile(w, r, "goroutine")
	case p == h.opts.PprofPrefix+"/goroutineleak":
		endpoint = "goroutineleak"
		h.serveProfile(w, r, "goroutineleak")
	case p == h.opts.AgentPrefix+"/context":
		endpoint = "context"
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(h.sampler.Sample())
	case p == h.opts.AgentPrefix+"/metrics":
		endpoint = "agent_metrics"
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_ = h.counters.write(w, h.limiter.clients())
	case p == h.opts.MetricsPath && h.opts.Metrics != nil:
		endpoint = "metrics"
		h.opts.Metrics.ServeHTTP(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (h *Handler) serveProfile(w http.ResponseWriter, r *http.Request, name string) {
	debugLevel := 0
	if v := r.URL.Query().Get("debug"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 2 {
			http.Error(w, "debug must be 0, 1 or 2", http.StatusBadRequest)
			return
		}
		debugLevel = n
	}
	prof := pprof.Lookup(name)
	if prof == nil {
		// goroutineleak: Go 1.26 has it only with GOEXPERIMENT=goroutineleakprofile.
		http.Error(w, "profile not available in this runtime: "+name, http.StatusNotFound)
		return
	}
	sample := h.sampler.Sample()
	if debugLevel == 2 {
		d := h.opts.Fuse.decide(sample)
		if d.Full {
			select {
			case h.fullDump <- struct{}{}:
				defer func() { <-h.fullDump }()
			default:
				d = Decision{Reason: "busy", Detail: fmt.Sprintf("goroutines=%d; dumps_in_progress=1", sample.Goroutines)}
			}
		}
		refuse := !d.Full && h.opts.Fuse.Refuse
		w.Header().Set(HeaderFuse, d.Header(refuse))
		switch {
		case d.Full:
			h.counters.add("leakhound_agent_fuse_total", "full", "none", 1)
		case refuse:
			h.counters.add("leakhound_agent_fuse_total", "refused", d.Reason, 1)
			w.Header().Set("Retry-After", "60")
			w.Header().Set(HeaderContext, sample.Header())
			http.Error(w, "debug=2 refused by the fuse: "+d.Reason, http.StatusServiceUnavailable)
			return
		default:
			h.counters.add("leakhound_agent_fuse_total", "downgraded", d.Reason, 1)
			debugLevel = 1
		}
	}
	w.Header().Set(HeaderContext, sample.Header())
	if debugLevel == 0 {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s"`, name))
	} else {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if r.Method == http.MethodHead {
		return
	}
	_ = prof.WriteTo(w, debugLevel)
}

// clientIdentity: the verified client certificate's subject, else the remote IP.
func clientIdentity(r *http.Request, useCert bool) string {
	if useCert && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		return "cert:" + r.TLS.VerifiedChains[0][0].Subject.String()
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "ip:" + host
}

// authenticate says whether r may be served, and if not the reason counted.
func (h *Handler) authenticate(r *http.Request) (string, bool) {
	if h.opts.InsecureNoAuth {
		return "", true
	}
	if h.opts.ClientCert && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return "", true
	}
	if h.token == nil {
		return "unauthorized", false
	}
	want, err := h.token.get()
	if err != nil {
		return "token_unavailable", false
	}
	got, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		return "unauthorized", false
	}
	// Hashes are compared, so neither the length nor the content of the token shows in time.
	gh, wh := sha256.Sum256([]byte(got)), sha256.Sum256(want)
	if subtle.ConstantTimeCompare(gh[:], wh[:]) != 1 {
		return "unauthorized", false
	}
	return "", true
}

func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// tokenSource holds the token, re-read from its file when the file changes.
type tokenSource struct {
	path string
	mu   sync.Mutex
	tok  []byte
	size int64
	mod  time.Time
}

func staticToken(t string) *tokenSource { return &tokenSource{tok: []byte(t)} }

func (s *tokenSource) get() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.path == "" {
		return s.tok, nil
	}
	fi, err := os.Stat(s.path)
	if err != nil {
		return nil, err
	}
	if s.tok != nil && fi.Size() == s.size && fi.ModTime().Equal(s.mod) {
		return s.tok, nil
	}
	b, err := readBounded(s.path)
	if err != nil {
		return nil, err
	}
	tok := []byte(strings.TrimSpace(string(b)))
	if len(tok) == 0 {
		return nil, fmt.Errorf("%s is empty", s.path)
	}
	s.tok, s.size, s.mod = tok, fi.Size(), fi.ModTime()
	return s.tok, nil
}
