// Command fleet stands in for many Go pods in the ingest benchmark: one process listening on
// N loopback addresses (127.1.x.y), each answering /metrics and /debug/pprof/goroutine like a
// real service would. The bodies are real: this process's own client_golang registry and
// goroutine profile (with goroutines parked in a few distinct stacks), rendered once at start
// so that the benchmark measures the scraper, not N live stop-the-world profiles.
//
// With -hostile MODE=N,... some of the targets misbehave instead (spread over the fleet, pods
// named hostile-MODE-NNNN; see hostile.go): endless bodies, a byte a second, gzip bombs, huge
// headers, a malformed /metrics. With -port 0 every address gets a port of its own from the
// kernel (tests running side by side do not collide).
//
// With -fetch it is the reference client instead: it GETs the same URLs the scraper does
// (metrics + debug=1 per target) with the same concurrency and prints the wall time.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type target struct {
	URL       string `json:"url"`
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
}

func parkedSend(ch chan int) { ch <- 1 }
func parkedRecv(ch chan int) { <-ch }
func parkedSelect(a, b chan int) {
	select {
	case <-a:
	case <-b:
	}
}

func main() {
	n := flag.Int("n", 1000, "number of targets")
	port := flag.Int("port", 16060, "port on every address")
	targetsOut := flag.String("targets", "", "write a leakhound targets file here")
	fetch := flag.String("fetch", "", "reference client: fetch the targets of this file")
	conc := flag.Int("concurrency", 64, "reference client concurrency")
	hostileSpec := flag.String("hostile", "", "hostile targets: MODE=N,... (endless, endlessdump, drip, gzipbomb, headers, badmetrics)")
	flag.Parse()
	if *fetch != "" {
		runFetch(*fetch, *conc)
		return
	}

	// Goroutines parked in distinct stacks, as a leaking service has.
	ch := make(chan int)
	for i := 0; i < 40; i++ {
		go parkedSend(ch)
		go parkedRecv(make(chan int))
		go parkedSelect(make(chan int), make(chan int))
	}
	time.Sleep(100 * time.Millisecond)
	var metrics, debug1, debug2 bytes.Buffer
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		log.Fatal(err)
	}
	rec := &bufferWriter{}
	promhttp.HandlerFor(prometheus.DefaultGatherer, promhttp.HandlerOpts{}).ServeHTTP(rec, httpReq("/metrics"))
	metrics.Write(rec.buf.Bytes())
	_ = mfs
	pprof.Lookup("goroutine").WriteTo(&debug1, 1)
	pprof.Lookup("goroutine").WriteTo(&debug2, 2)

	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Write(metrics.Bytes())
	})
	mux.HandleFunc("/debug/pprof/goroutine", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if r.URL.Query().Get("debug") == "2" {
			w.Write(debug2.Bytes())
			return
		}
		w.Write(debug1.Bytes())
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	modes, err := hostileModes(*hostileSpec, *n)
	if err != nil {
		log.Fatal(err)
	}
	servers := map[string]*http.Server{}
	var targets []target
	for i := 0; i < *n; i++ {
		addr := fmt.Sprintf("127.1.%d.%d:%d", i/250, i%250+1, *port)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			log.Fatalf("listen %s: %v", addr, err)
		}
		pod := fmt.Sprintf("pod-%04d", i)
		s := srv
		if m := modes[i]; m != "" {
			pod = fmt.Sprintf("hostile-%s-%04d", m, i)
			if servers[m] == nil {
				servers[m] = &http.Server{Handler: hostileHandler(m, metrics.Bytes(), debug1.Bytes(), debug2.Bytes()), ReadHeaderTimeout: 5 * time.Second}
			}
			s = servers[m]
		}
		go s.Serve(l)
		targets = append(targets, target{URL: "http://" + l.Addr().String(), Namespace: "fleet", Pod: pod})
	}
	if *targetsOut != "" {
		b, _ := json.Marshal(targets)
		if err := os.WriteFile(*targetsOut, b, 0o644); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Printf("ready %d targets, metrics %d B, debug=1 %d B, debug=2 %d B\n", *n, metrics.Len(), debug1.Len(), debug2.Len())
	select {}
}

type bufferWriter struct {
	buf bytes.Buffer
	h   http.Header
}

func (b *bufferWriter) Header() http.Header {
	if b.h == nil {
		b.h = http.Header{}
	}
	return b.h
}
func (b *bufferWriter) Write(p []byte) (int, error) { return b.buf.Write(p) }
func (b *bufferWriter) WriteHeader(int)             {}

func httpReq(path string) *http.Request {
	r, _ := http.NewRequest("GET", path, nil)
	return r
}

func runFetch(file string, conc int) {
	b, err := os.ReadFile(file)
	if err != nil {
		log.Fatal(err)
	}
	var targets []target
	if err := json.Unmarshal(b, &targets); err != nil {
		log.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	start := time.Now()
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bytesRead int64
	for _, t := range targets {
		wg.Add(1)
		sem <- struct{}{}
		go func(u string) {
			defer wg.Done()
			defer func() { <-sem }()
			for _, p := range []string{"/metrics", "/debug/pprof/goroutine?debug=1"} {
				resp, err := client.Get(u + p)
				if err != nil {
					log.Print(err)
					continue
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				bytesRead += n
				mu.Unlock()
			}
		}(t.URL)
	}
	wg.Wait()
	fmt.Printf("reference fetch: %d targets, %d bytes, %.0f ms\n", len(targets), bytesRead, float64(time.Since(start).Microseconds())/1000)
}
