package correlate_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/leakhound/leakhound/agent"
	"github.com/leakhound/leakhound/agent/correlate"
	"go.opentelemetry.io/otel/trace"
)

const (
	traceHex = "4bf92f3577b34da6a3ce929d0e0e4736"
	spanHex  = "00f067aa0ba902b7"
)

func spanContext(t *testing.T) context.Context {
	tid, err := trace.TraceIDFromHex(traceHex)
	if err != nil {
		t.Fatal(err)
	}
	sid, err := trace.SpanIDFromHex(spanHex)
	if err != nil {
		t.Fatal(err)
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
	return trace.ContextWithSpanContext(context.Background(), sc)
}

// debug1 takes a debug=1 goroutine profile through the agent's handler.
func debug1(t *testing.T) string {
	h, err := agent.New(agent.Options{InsecureNoAuth: true, CgroupDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/debug/pprof/goroutine?debug=1", nil))
	if w.Code != 200 {
		t.Fatalf("debug=1: %d", w.Code)
	}
	return w.Body.String()
}

// record returns the debug=1 record whose frames name fn.
func record(t *testing.T, profile, fn string) string {
	for _, rec := range strings.Split(profile, "\n\n") {
		if strings.Contains(rec, fn) {
			return rec
		}
	}
	t.Fatalf("no record of %s in:\n%s", fn, profile)
	return ""
}

func parkedByRequest(stop <-chan struct{}, started *sync.WaitGroup) {
	started.Done()
	<-stop
}

func parkedWithoutSpan(stop <-chan struct{}, started *sync.WaitGroup) {
	started.Done()
	<-stop
}

func TestTraceIDsInDebug1Labels(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	var started sync.WaitGroup
	started.Add(2)
	correlate.Go(spanContext(t), func(context.Context) { parkedByRequest(stop, &started) }, "handler", "/api/orders")
	correlate.Go(context.Background(), func(context.Context) { parkedWithoutSpan(stop, &started) })
	started.Wait()

	prof := debug1(t)
	rec := record(t, prof, "correlate_test.parkedByRequest")
	want := `# labels: {"handler":"/api/orders", "span_id":"` + spanHex + `", "trace_id":"` + traceHex + `"}`
	if !strings.Contains(rec, want) {
		t.Fatalf("record lacks %s:\n%s", want, rec)
	}
	if rec := record(t, prof, "correlate_test.parkedWithoutSpan"); strings.Contains(rec, "# labels:") {
		t.Fatalf("a goroutine without a span got labels:\n%s", rec)
	}
}

func TestMiddlewareLabelsWhatAHandlerStarts(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	var started sync.WaitGroup
	started.Add(1)
	handler := correlate.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The handler returns; the goroutine it started stays (a leak).
		go parkedByRequest(stop, &started)
	}))
	r := httptest.NewRequest("GET", "/api/orders/1", nil).WithContext(spanContext(t))
	handler.ServeHTTP(httptest.NewRecorder(), r)
	started.Wait()
	rec := record(t, debug1(t), "correlate_test.parkedByRequest")
	if !strings.Contains(rec, `"trace_id":"`+traceHex+`"`) || !strings.Contains(rec, `"span_id":"`+spanHex+`"`) {
		t.Fatalf("labels missing:\n%s", rec)
	}
}

func TestLabels(t *testing.T) {
	if got := correlate.Labels(context.Background(), correlate.TraceAndSpan); len(got) != 0 {
		t.Fatalf("no span: %v", got)
	}
	got := strings.Join(correlate.Labels(spanContext(t), correlate.TraceOnly, "k", "v"), ",")
	if got != "trace_id,"+traceHex+",k,v" {
		t.Fatalf("%s", got)
	}
}
