package main

// The leak patterns. Each pattern has a spawn function (runs on the caller's
// goroutine, inside pprof.Do so the goroutine it starts inherits the labels)
// and a distinct, clearly named goroutine body, so that every pattern has its
// own stack and its own "created by" frame in a goroutine dump.
//
// Where it is natural, the primitive a goroutine blocks on becomes
// unreachable once the spawn function returns, as it does in real leaks;
// that is what lets the runtime's goroutine leak detector (GOEXPERIMENT=
// goroutineleakprofile on Go 1.26, default on Go 1.27) mark them "(leaked)".

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// pattern describes one leak pattern.
type pattern struct {
	name    string
	handler string // pprof label "handler": the endpoint that "caused" the leak
	route   string // pprof label "route": method + route template (has spaces and braces)
	// spawn starts one leaking goroutine (or, for httpbody, one leaked
	// request). It returns an error if the leak could not be set up.
	spawn func(ctx context.Context, env *env) error
	// noDeadlock is true for patterns that keep the runtime's deadlock
	// detector from firing (timers, network), so -deadlock skips them.
	noDeadlock bool
}

// env is what spawn functions may need from the program.
type env struct {
	baseURL string       // http://127.0.0.1:PORT of this process
	client  *http.Client // client with no timeout, for httpbody
}

var patterns = []pattern{
	{name: "chansend", handler: "/api/orders", route: "POST /api/orders/{id}", spawn: spawnChanSend},
	{name: "chanrecv", handler: "/api/payments", route: "POST /api/payments", spawn: spawnChanRecv},
	{name: "select", handler: "/api/inventory", route: "GET /api/inventory/{sku}", spawn: spawnSelect},
	{name: "httpbody", handler: "/api/proxy", route: "GET /api/proxy/{upstream}", spawn: spawnHTTPBody, noDeadlock: true},
	{name: "context", handler: "/api/search", route: "GET /api/search", spawn: spawnContext},
	{name: "mutex", handler: "/api/cart", route: "PUT /api/cart/{id}", spawn: spawnMutex},
	{name: "waitgroup", handler: "/api/batch", route: "POST /api/batch", spawn: spawnWaitGroup},
	{name: "ticker", handler: "/api/subscribe", route: "GET /api/subscribe", spawn: spawnTicker, noDeadlock: true},
	{name: "sleep", handler: "/api/poll", route: "GET /api/poll", spawn: spawnSleep, noDeadlock: true},
	{name: "nilchan", handler: "/api/notify", route: "POST /api/notify", spawn: spawnNilChan},
	{name: "nocases", handler: "/api/daemon", route: "GET /api/daemon", spawn: spawnNoCases},
}

func patternByName(name string) (*pattern, bool) {
	if name == "timer" { // alias
		name = "ticker"
	}
	for i := range patterns {
		if patterns[i].name == name {
			return &patterns[i], true
		}
	}
	return nil, false
}

// ---- chansend: a result is sent on an unbuffered channel nobody reads any more.

func spawnChanSend(ctx context.Context, _ *env) error {
	results := make(chan orderResult)
	go leakChanSend(results)
	// The caller "timed out" and went away without reading results.
	return nil
}

type orderResult struct {
	id    int
	total float64
}

func leakChanSend(results chan<- orderResult) {
	r := orderResult{id: 42, total: 99.5}
	results <- r // blocks forever: [chan send]
}

// ---- chanrecv: a worker waits for a job on a channel nobody sends on or closes.

func spawnChanRecv(ctx context.Context, _ *env) error {
	jobs := make(chan string)
	go leakChanRecv(jobs)
	return nil
}

func leakChanRecv(jobs <-chan string) {
	for j := range jobs { // blocks forever: [chan receive]
		_ = j
	}
}

// ---- select: select forever on channels nobody writes.

func spawnSelect(ctx context.Context, _ *env) error {
	updates := make(chan int)
	quit := make(chan struct{})
	go leakSelect(updates, quit)
	return nil
}

func leakSelect(updates <-chan int, quit <-chan struct{}) {
	stock := 0
	for {
		select { // blocks forever: [select]
		case n := <-updates:
			stock += n
		case <-quit:
			return
		}
	}
}

// ---- httpbody: an http.Client with no timeout GETs a streaming endpoint of
// this same process that never finishes, and the caller never closes
// resp.Body. That pins the client's persistConn.readLoop and writeLoop and
// the server's conn.serve (blocked in streamHandler) plus its background read.

func spawnHTTPBody(ctx context.Context, e *env) error {
	errc := make(chan error, 1)
	go leakHTTPBody(e.client, e.baseURL+"/api/stream", errc)
	// Wait until the response headers and the first chunk arrived, so
	// that when spawn returns the pinned goroutines exist.
	select {
	case err := <-errc:
		return err
	case <-time.After(10 * time.Second):
		return fmt.Errorf("httpbody: no first chunk after 10s")
	}
}

func leakHTTPBody(client *http.Client, url string, errc chan<- error) {
	resp, err := client.Get(url)
	if err != nil {
		errc <- err
		return
	}
	// Read the first event and "forget" the rest: resp.Body is never closed.
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil && err != io.EOF {
		errc <- err
		return
	}
	_ = line
	errc <- nil
}

// streamHandler streams one event, then waits for more that never come. The
// request context is only cancelled when the client closes the connection,
// which the leaking client never does.
func streamHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	fmt.Fprintf(w, "data: {\"event\":\"hello\"}\n")
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	waitForStreamEnd(r.Context())
}

func waitForStreamEnd(ctx context.Context) {
	<-ctx.Done()
}

// ---- context: a goroutine waits on ctx.Done() of a context never cancelled
// (the cancel func is stored in a request struct that is then dropped).

type searchRequest struct {
	query  string
	cancel context.CancelFunc
}

func spawnContext(ctx context.Context, _ *env) error {
	cctx, cancel := context.WithCancel(context.Background())
	req := &searchRequest{query: "shoes", cancel: cancel}
	go leakContext(cctx, req.query)
	return nil
}

func leakContext(ctx context.Context, query string) {
	<-ctx.Done() // blocks forever: [chan receive]
	_ = query
}

// ---- mutex: a session lock taken on an error path and never released.

type cartSession struct {
	mu    sync.Mutex
	items []string
}

func spawnMutex(ctx context.Context, _ *env) error {
	s := &cartSession{}
	s.mu.Lock() // forgotten Unlock on an error path
	go leakMutex(s)
	return nil
}

func leakMutex(s *cartSession) {
	s.mu.Lock() // blocks forever: [sync.Mutex.Lock]
	s.items = append(s.items, "sock")
	s.mu.Unlock()
}

// ---- waitgroup: Wait on a WaitGroup whose Done is never called.

func spawnWaitGroup(ctx context.Context, _ *env) error {
	wg := &sync.WaitGroup{}
	wg.Add(1) // the matching Done is missing
	go leakWaitGroup(wg)
	return nil
}

func leakWaitGroup(wg *sync.WaitGroup) {
	wg.Wait() // blocks forever: [sync.WaitGroup.Wait]
}

// ---- ticker: a polling loop whose ticker is never stopped and which has no
// exit condition.

func spawnTicker(ctx context.Context, _ *env) error {
	go leakTicker(time.Hour)
	return nil
}

func leakTicker(every time.Duration) {
	t := time.NewTicker(every)
	n := 0
	for range t.C { // blocks: [chan receive] on the ticker channel
		n++
	}
}

// ---- sleep: a retry loop that sleeps forever.

func spawnSleep(ctx context.Context, _ *env) error {
	go leakSleep(time.Hour)
	return nil
}

func leakSleep(backoff time.Duration) {
	for {
		time.Sleep(backoff) // [sleep]
	}
}

// ---- nilchan: a send on a channel that was never made.

type notifier struct {
	events chan string // never initialised
}

func spawnNilChan(ctx context.Context, _ *env) error {
	n := &notifier{}
	go leakNilChan(n)
	return nil
}

func leakNilChan(n *notifier) {
	n.events <- "shipped" // blocks forever: [chan send (nil chan)]
}

// ---- nocases: select {} in a "daemon" goroutine.

func spawnNoCases(ctx context.Context, _ *env) error {
	go leakNoCases()
	return nil
}

func leakNoCases() {
	select {} // blocks forever: [select (no cases)]
}
