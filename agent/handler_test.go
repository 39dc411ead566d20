package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"
)

// get serves one request through h from remote address addr.
func get(t *testing.T, h http.Handler, target, token, addr string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, target, nil)
	if addr != "" {
		r.RemoteAddr = addr
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func mustNew(t *testing.T, o Options) *Handler {
	t.Helper()
	if o.CgroupDir == "" {
		// No cgroup: the tests say what the memory rule sees.
		o.CgroupDir = t.TempDir()
	}
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestNewRequiresAuthentication(t *testing.T) {
	for _, o := range []Options{
		{},
		{Token: "a", TokenFile: "/x"},
		{Token: "a", InsecureNoAuth: true},
		{Token: "a", PprofPrefix: "/debug/pprof/"},
		{TokenFile: filepath.Join(t.TempDir(), "missing")},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}

func TestBearerToken(t *testing.T) {
	h := mustNew(t, Options{Token: "s3cret-token"})
	for _, tc := range []struct {
		name, header string
		want         int
	}{
		{"none", "", 401},
		{"wrong", "Bearer s3cret-tokeN", 401},
		{"prefix", "Bearer s3cret", 401},
		{"longer", "Bearer s3cret-token-and-more", 401},
		{"basic", "Basic czNjcmV0LXRva2Vu", 401},
		{"right", "Bearer s3cret-token", 200},
		{"scheme case", "bearer s3cret-token", 200},
	} {
		r := httptest.NewRequest(http.MethodGet, "/debug/pprof/goroutine?debug=1", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, w.Code, tc.want)
		}
		if tc.want == 401 {
			if !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s: no challenge", tc.name)
			}
			if strings.Contains(w.Body.String(), "goroutine") {
				t.Errorf("%s: served a profile unauthenticated", tc.name)
			}
		} else if !strings.HasPrefix(w.Body.String(), "goroutine profile: total ") {
			t.Errorf("%s: body %q", tc.name, head(w.Body.String()))
		}
	}
	if got := h.counters.get("leakhound_agent_denied_total", "unauthorized", ""); got != 5 {
		t.Errorf("denied unauthorized = %d, want 5", got)
	}
}

func TestTokenFileRotates(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "token")
	write(t, f, "first-token\n")
	h := mustNew(t, Options{TokenFile: f, RatePerSecond: 1000, Burst: 1000})
	if w := get(t, h, "/debug/pprof/goroutine?debug=1", "first-token", ""); w.Code != 200 {
		t.Fatalf("first token: %d", w.Code)
	}
	write(t, f, "the-second-token")
	if w := get(t, h, "/debug/pprof/goroutine?debug=1", "first-token", ""); w.Code != 401 {
		t.Fatalf("old token after rotation: %d", w.Code)
	}
	if w := get(t, h, "/debug/pprof/goroutine?debug=1", "the-second-token", ""); w.Code != 200 {
		t.Fatalf("new token: %d", w.Code)
	}
	os.Remove(f)
	if w := get(t, h, "/debug/pprof/goroutine?debug=1", "the-second-token", ""); w.Code != 401 {
		t.Fatalf("token file gone: %d (fails closed)", w.Code)
	}
	if h.counters.get("leakhound_agent_denied_total", "token_unavailable", "") != 1 {
		t.Error("token_unavailable not counted")
	}
}

func TestRateLimitPerClient(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	h := mustNew(t, Options{Token: "t", RatePerSecond: 1, Burst: 3, MaxClients: 2, now: func() time.Time { return now }})
	a, b, c := "10.0.0.1:5000", "10.0.0.2:5000", "10.0.0.3:5000"
	for i := range 3 {
		if w := get(t, h, "/debug/leakhound/context", "t", a); w.Code != 200 {
			t.Fatalf("a request %d: %d", i, w.Code)
		}
	}
	w := get(t, h, "/debug/leakhound/context", "t", a)
	if w.Code != 429 || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("a's 4th request: %d Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	// A wrong token costs a token too: guessing is rate-limited.
	if w := get(t, h, "/debug/leakhound/context", "wrong", a+"1"); w.Code != 429 {
		t.Fatalf("a (other port) guessing: %d", w.Code)
	}
	// Another client has its own bucket.
	if w := get(t, h, "/debug/leakhound/context", "t", b); w.Code != 200 {
		t.Fatalf("b: %d", w.Code)
	}
	// The table holds 2 clients, neither idle: a third is refused, not added.
	if w := get(t, h, "/debug/leakhound/context", "t", c); w.Code != 429 {
		t.Fatalf("c with a full table: %d", w.Code)
	}
	if n := h.limiter.clients(); n != 2 {
		t.Fatalf("clients = %d", n)
	}
	now = now.Add(1500 * time.Millisecond) // a: 1.5 tokens, b: 3 (full, idle)
	if w := get(t, h, "/debug/leakhound/context", "t", a); w.Code != 200 {
		t.Fatalf("a after refill: %d", w.Code)
	}
	if w := get(t, h, "/debug/leakhound/context", "t", a); w.Code != 429 {
		t.Fatalf("a again: %d", w.Code)
	}
	// b is full again: c takes its place.
	if w := get(t, h, "/debug/leakhound/context", "t", c); w.Code != 200 {
		t.Fatalf("c after b went idle: %d", w.Code)
	}
	if got := h.counters.get("leakhound_agent_denied_total", "rate_limited", ""); got != 4 {
		t.Errorf("rate_limited = %d, want 4", got)
	}
}

// park starts n goroutines blocked until the returned func is called (which waits for them).
func park(n int) func() {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(n)
	var started sync.WaitGroup
	started.Add(n)
	for range n {
		go func() {
			defer wg.Done()
			started.Done()
			<-stop
		}()
	}
	started.Wait()
	return func() { close(stop); wg.Wait() }
}

func isDebug2(body string) bool {
	return strings.HasPrefix(body, "goroutine ") && strings.Contains(body, " [")
}
func isDebug1(body string) bool { return strings.HasPrefix(body, "goroutine profile: total ") }

func head(s string) string {
	if len(s) > 120 {
		return s[:120]
	}
	return s
}

func TestFuseGoroutineCount(t *testing.T) {
	release := park(300)
	defer release()
	h := mustNew(t, Options{InsecureNoAuth: true, Fuse: FuseOptions{MaxGoroutines: 200}})
	w := get(t, h, "/debug/pprof/goroutine?debug=2", "", "")
	fuse := w.Header().Get(HeaderFuse)
	if w.Code != 200 || !strings.HasPrefix(fuse, "downgraded; reason=goroutines; goroutines=") ||
		!strings.Contains(fuse, "max_goroutines=200") {
		t.Fatalf("%d %q", w.Code, fuse)
	}
	if !isDebug1(w.Body.String()) {
		t.Fatalf("downgraded body is not debug=1: %q", head(w.Body.String()))
	}
	// debug=1 and debug=0 are not fused and carry no fuse header.
	w = get(t, h, "/debug/pprof/goroutine?debug=1", "", "")
	if w.Header().Get(HeaderFuse) != "" || !isDebug1(w.Body.String()) {
		t.Fatalf("debug=1: %q", w.Header().Get(HeaderFuse))
	}
	w = get(t, h, "/debug/pprof/goroutine", "", "")
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/octet-stream" || !strings.HasPrefix(w.Body.String(), "\x1f\x8b") {
		t.Fatalf("debug=0: %d %q", w.Code, w.Header().Get("Content-Type"))
	}

	h2 := mustNew(t, Options{InsecureNoAuth: true, Fuse: FuseOptions{MaxGoroutines: 200, Refuse: true}})
	w = get(t, h2, "/debug/pprof/goroutine?debug=2", "", "")
	if w.Code != 503 || !strings.HasPrefix(w.Header().Get(HeaderFuse), "refused; reason=goroutines") || w.Header().Get("Retry-After") == "" {
		t.Fatalf("refuse: %d %q", w.Code, w.Header().Get(HeaderFuse))
	}

	h3 := mustNew(t, Options{InsecureNoAuth: true, Fuse: FuseOptions{MaxGoroutines: 1000}})
	w = get(t, h3, "/debug/pprof/goroutine?debug=2", "", "")
	if !strings.HasPrefix(w.Header().Get(HeaderFuse), "full; goroutines=") || !isDebug2(w.Body.String()) {
		t.Fatalf("under the limit: %q %q", w.Header().Get(HeaderFuse), head(w.Body.String()))
	}

	if h.counters.get("leakhound_agent_fuse_total", "downgraded", "goroutines") != 1 ||
		h2.counters.get("leakhound_agent_fuse_total", "refused", "goroutines") != 1 ||
		h3.counters.get("leakhound_agent_fuse_total", "full", "none") != 1 {
		t.Fatal("fuse counters")
	}
	m := get(t, h, "/debug/leakhound/metrics", "", "").Body.String()
	if !strings.Contains(m, `leakhound_agent_fuse_total{decision="downgraded",reason="goroutines"} 1`) {
		t.Fatalf("metrics:\n%s", m)
	}
}

// blockingWriter holds the first Write until released: a debug=2 dump in the middle of being
// written.
type blockingWriter struct {
	*httptest.ResponseRecorder
	writing, release chan struct{}
	once             sync.Once
}

func (b *blockingWriter) Write(p []byte) (int, error) {
	b.once.Do(func() { close(b.writing); <-b.release })
	return b.ResponseRecorder.Write(p)
}

func TestFuseOneFullDumpAtATime(t *testing.T) {
	h := mustNew(t, Options{InsecureNoAuth: true})
	first := &blockingWriter{ResponseRecorder: httptest.NewRecorder(), writing: make(chan struct{}), release: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(first, httptest.NewRequest("GET", "/debug/pprof/goroutine?debug=2", nil))
	}()
	<-first.writing // the first dump holds the slot while its body is written
	w := get(t, h, "/debug/pprof/goroutine?debug=2", "", "")
	if !strings.HasPrefix(w.Header().Get(HeaderFuse), "downgraded; reason=busy; goroutines=") || !isDebug1(w.Body.String()) {
		t.Fatalf("second dump while the first is written: %q", w.Header().Get(HeaderFuse))
	}
	close(first.release)
	<-done
	if !strings.HasPrefix(first.Header().Get(HeaderFuse), "full") || !isDebug2(first.Body.String()) {
		t.Fatalf("first: %q", first.Header().Get(HeaderFuse))
	}
	w = get(t, h, "/debug/pprof/goroutine?debug=2", "", "")
	if !strings.HasPrefix(w.Header().Get(HeaderFuse), "full") || !isDebug2(w.Body.String()) {
		t.Fatalf("after the first finished: %q", w.Header().Get(HeaderFuse))
	}
	if len(h.fullDump) != 0 {
		t.Fatal("the slot was not released")
	}
	if h.counters.get("leakhound_agent_fuse_total", "downgraded", "busy") != 1 {
		t.Fatal("busy not counted")
	}
}

func TestFuseMemoryFromCgroupFixture(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "memory.max"), "268435456\n")
	h := mustNew(t, Options{InsecureNoAuth: true, CgroupDir: dir})
	// 250 MiB of 256 used: a dump would pass 80 %.
	write(t, filepath.Join(dir, "memory.current"), "262144000\n")
	w := get(t, h, "/debug/pprof/goroutine?debug=2", "", "")
	fuse := w.Header().Get(HeaderFuse)
	if !strings.HasPrefix(fuse, "downgraded; reason=memory;") || !strings.Contains(fuse, "usage=262144000;") ||
		!strings.Contains(fuse, "limit=268435456;") || !isDebug1(w.Body.String()) {
		t.Fatalf("near the limit: %q", fuse)
	}
	// 10 MiB used: served in full.
	write(t, filepath.Join(dir, "memory.current"), "10485760\n")
	w = get(t, h, "/debug/pprof/goroutine?debug=2", "", "")
	if !strings.HasPrefix(w.Header().Get(HeaderFuse), "full") || !isDebug2(w.Body.String()) {
		t.Fatalf("far from the limit: %q", w.Header().Get(HeaderFuse))
	}
	// No limit ("max") and a configured one: the configured one counts.
	write(t, filepath.Join(dir, "memory.max"), "max\n")
	h2 := mustNew(t, Options{InsecureNoAuth: true, CgroupDir: dir, Fuse: FuseOptions{MemoryLimit: 8 << 20}})
	if f := get(t, h2, "/debug/pprof/goroutine?debug=2", "", "").Header().Get(HeaderFuse); !strings.HasPrefix(f, "downgraded; reason=memory") {
		t.Fatalf("configured limit: %q", f)
	}
	if f := get(t, h, "/debug/pprof/goroutine?debug=2", "", "").Header().Get(HeaderFuse); !strings.HasPrefix(f, "full") {
		t.Fatalf("memory.max=max: %q", f)
	}
}

// The case: 500,000 goroutines under a 256 MiB limit get debug=1, not debug=2. No
// cgroup v2 can be made on the test machines (cgroup v1 hosts, gVisor), so the limit is
// configured and the usage is the process's real VmRSS: 500,000 parked goroutines need at
// least 2 KiB of stack each, ~1 GiB, which no 256 MiB container could hold at all.
func TestFuse500kGoroutinesUnder256MiB(t *testing.T) {
	if testing.Short() {
		t.Skip("500,000 goroutines")
	}
	release := park(500_000)
	defer release()
	// The goroutine rule off: the memory rule alone must trip.
	h := mustNew(t, Options{InsecureNoAuth: true, Fuse: FuseOptions{MaxGoroutines: -1, MemoryLimit: 256 << 20}})
	start := time.Now()
	w := get(t, h, "/debug/pprof/goroutine?debug=2", "", "")
	took := time.Since(start)
	fuse := w.Header().Get(HeaderFuse)
	if !strings.HasPrefix(fuse, "downgraded; reason=memory;") || !isDebug1(w.Body.String()) {
		t.Fatalf("%q %q", fuse, head(w.Body.String()))
	}
	ctx, err := ParseHeader(w.Header().Get(HeaderContext))
	if err != nil {
		t.Fatal(err)
	}
	if ctx["goroutines"] < 500_000 {
		t.Fatalf("context says %d goroutines", ctx["goroutines"])
	}
	// The debug=1 body aggregates: a handful of records, not 500,000.
	if n := strings.Count(w.Body.String(), "\n#\t"); n > 2000 {
		t.Fatalf("debug=1 body has %d frame lines", n)
	}
	t.Logf("fuse: %s; context: %s; debug=1 of %d bytes in %v", fuse, w.Header().Get(HeaderContext), w.Body.Len(), took)
	// With defaults, the goroutine count trips first.
	h2 := mustNew(t, Options{InsecureNoAuth: true, Fuse: FuseOptions{MemoryLimit: 256 << 20}})
	if f := get(t, h2, "/debug/pprof/goroutine?debug=2", "", "").Header().Get(HeaderFuse); !strings.HasPrefix(f, "downgraded; reason=goroutines") {
		t.Fatalf("defaults: %q", f)
	}
}

func TestRoutesMethodsAndDebugValues(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "# TYPE svc_up gauge\nsvc_up 1\n")
	})
	h := mustNew(t, Options{Token: "t", Metrics: metrics, RatePerSecond: 1000, Burst: 1000})
	for _, tc := range []struct {
		method, target, token string
		want                  int
	}{
		{"GET", "/debug/pprof/goroutine?debug=3", "t", 400},
		{"GET", "/debug/pprof/goroutine?debug=x", "t", 400},
		{"GET", "/debug/pprof/goroutine?debug=-1", "t", 400},
		{"POST", "/debug/pprof/goroutine?debug=1", "t", 405},
		{"GET", "/debug/pprof/heap", "t", 404},
		{"GET", "/debug/pprof/heap", "", 401}, // nothing is told without the token, not even 404
		{"GET", "/metrics", "", 401},
		{"GET", "/metrics", "t", 200},
		{"HEAD", "/debug/pprof/goroutine?debug=2", "t", 200},
	} {
		r := httptest.NewRequest(tc.method, tc.target, nil)
		if tc.token != "" {
			r.Header.Set("Authorization", "Bearer "+tc.token)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.target, w.Code, tc.want)
		}
		if tc.target == "/metrics" && tc.want == 200 && w.Body.String() != "# TYPE svc_up gauge\nsvc_up 1\n" {
			t.Errorf("metrics passthrough: %q", w.Body.String())
		}
	}
	m := get(t, h, "/debug/leakhound/metrics", "t", "").Body.String()
	for _, want := range []string{
		`leakhound_agent_requests_total{endpoint="goroutine",code="400"} 3`,
		`leakhound_agent_requests_total{endpoint="metrics",code="200"} 1`,
		`leakhound_agent_requests_total{endpoint="unknown",code="401"} 2`,
		"leakhound_agent_rate_limit_clients 1",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, m)
		}
	}
}

func TestRegisterNeverTouchesTheDefaultMux(t *testing.T) {
	h := mustNew(t, Options{Token: "t", Metrics: http.NotFoundHandler()})
	mux := http.NewServeMux()
	h.Register(mux)
	for _, p := range []string{"/debug/pprof/goroutine", "/debug/leakhound/context", "/metrics"} {
		r := httptest.NewRequest("GET", p, nil)
		if _, pat := mux.Handler(r); pat == "" {
			t.Errorf("%s not on the mux", p)
		}
		if _, pat := http.DefaultServeMux.Handler(r); pat != "" {
			t.Errorf("%s on the default mux (%s)", p, pat)
		}
	}
}

func TestGoroutineLeakProfileWhereTheRuntimeHasIt(t *testing.T) {
	h := mustNew(t, Options{InsecureNoAuth: true})
	w := get(t, h, "/debug/pprof/goroutineleak?debug=1", "", "")
	if pprof.Lookup("goroutineleak") == nil {
		if w.Code != 404 {
			t.Fatalf("no leak profile in this runtime, yet %d", w.Code)
		}
		t.Log("this runtime has no goroutineleak profile (Go 1.26 without GOEXPERIMENT=goroutineleakprofile): 404")
		return
	}
	if w.Code != 200 || !strings.HasPrefix(w.Body.String(), "goroutineleak profile: total ") {
		t.Fatalf("%d %q", w.Code, head(w.Body.String()))
	}
	// A leaked goroutine: blocked on a channel nobody else can reach.
	func() {
		ch := make(chan int)
		go leakedForTest(ch)
	}()
	// Polled: the goroutine is found once it has blocked, which nothing else can tell.
	deadline := time.Now().Add(10 * time.Second)
	for {
		w = get(t, h, "/debug/pprof/goroutineleak?debug=1", "", "")
		if strings.Contains(w.Body.String(), "agent.leakedForTest") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the leak profile misses the leaked goroutine:\n%s", w.Body.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	w = get(t, h, "/debug/pprof/goroutineleak?debug=2", "", "")
	if !strings.HasPrefix(w.Header().Get(HeaderFuse), "full") || !strings.Contains(w.Body.String(), "(leaked)") {
		t.Fatalf("debug=2: %q", w.Header().Get(HeaderFuse))
	}
}

func leakedForTest(ch chan int) { ch <- 1 }

func TestContextEndpointAndHeader(t *testing.T) {
	dir := t.TempDir()
	writeCgroupFixture(t, dir)
	status := filepath.Join(t.TempDir(), "status")
	write(t, status, procStatusFixture)
	h := mustNew(t, Options{InsecureNoAuth: true, CgroupDir: dir, ProcStatus: status})
	w := get(t, h, "/debug/leakhound/context", "", "")
	var s Sample
	if err := json.Unmarshal(w.Body.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	if s.Cgroup == nil || *s.Cgroup.MemoryCurrent != 73400320 || *s.Process.Threads != 12 || s.Goroutines < 1 {
		t.Fatalf("%s", w.Body.String())
	}
	w = get(t, h, "/debug/pprof/goroutine?debug=1", "", "")
	kv, err := ParseHeader(w.Header().Get(HeaderContext))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]int64{"memory_current": 73400320, "memory_max": 268435456, "cpu_nr_throttled": 7,
		"cpu_throttled_usec": 52000, "pids_current": 14, "threads": 12, "vm_rss": 41024 * 1024} {
		if kv[k] != v {
			t.Errorf("%s = %d, want %d (%s)", k, kv[k], v, w.Header().Get(HeaderContext))
		}
	}
}

// ---- mutual TLS

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCA(t)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.Raw)
	srvDER, srvKey := leaf(t, ca, caKey, "agent", true)
	writePEM(t, filepath.Join(dir, "srv.pem"), "CERTIFICATE", srvDER)
	writeKey(t, filepath.Join(dir, "srv.key"), srvKey)
	cfg, err := TLSConfig(filepath.Join(dir, "srv.pem"), filepath.Join(dir, "srv.key"), filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	h := mustNew(t, Options{ClientCert: true, Token: "t"})
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = cfg
	srv.StartTLS()
	defer srv.Close()

	roots := x509.NewCertPool()
	roots.AddCert(ca)
	cliDER, cliKey := leaf(t, ca, caKey, "leakhound-ingest", false)
	withCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: roots, ServerName: "127.0.0.1",
		Certificates: []tls.Certificate{{Certificate: [][]byte{cliDER}, PrivateKey: cliKey}},
	}}}
	resp, err := withCert.Get(srv.URL + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !isDebug1(string(body)) {
		t.Fatalf("with a client certificate: %d", resp.StatusCode)
	}
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}}}
	if resp, err := noCert.Get(srv.URL + "/debug/pprof/goroutine?debug=1"); err == nil {
		resp.Body.Close()
		t.Fatalf("without a client certificate: %d, want a refused handshake", resp.StatusCode)
	}
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return ca, key
}

func leaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, server bool) ([]byte, *ecdsa.PrivateKey) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	write(t, path, string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})))
}

func writeKey(t *testing.T, path string, key *ecdsa.PrivateKey) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, path, "EC PRIVATE KEY", der)
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
