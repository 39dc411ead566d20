// Package correlate puts the OpenTelemetry trace and span ids of a context into pprof labels,
// so that a goroutine started while serving a traced request carries them for life: its stack
// in a goroutine profile (debug=0 sample labels, debug=1 "# labels:", debug=2 headers on Go
// 1.27 or with GODEBUG=tracebacklabels=1) names the trace that created it, and leakhound lands
// the labels with the stack.
//
// It reads the span context with go.opentelemetry.io/otel/trace's SpanContextFromContext
// (the API module only, no SDK): any OpenTelemetry setup in the service puts it there.
//
// Cardinality: goroutine profiles aggregate by stack and label set, so per-trace labels make
// every leaked goroutine its own debug=1 record (as large as debug=2 for a leak of many
// goroutines). Label the entry points whose goroutines may outlive the request, or set Keys
// to TraceOnly where spans are too fine.
package correlate

import (
	"context"
	"net/http"
	"runtime/pprof"

	"go.opentelemetry.io/otel/trace"
)

// Label keys.
const (
	TraceIDKey = "trace_id"
	SpanIDKey  = "span_id"
)

// Keys selects which ids become labels.
type Keys int

const (
	// TraceAndSpan labels trace_id and span_id (the default).
	TraceAndSpan Keys = iota
	// TraceOnly labels trace_id.
	TraceOnly
)

// Labels returns the pprof label pairs (key, value, ...) for ctx's span, with extra pairs
// appended; none for a context without a valid span context.
func Labels(ctx context.Context, keys Keys, extra ...string) []string {
	sc := trace.SpanContextFromContext(ctx)
	var out []string
	if sc.IsValid() {
		out = append(out, TraceIDKey, sc.TraceID().String())
		if keys == TraceAndSpan {
			out = append(out, SpanIDKey, sc.SpanID().String())
		}
	}
	return append(out, extra...)
}

// Do runs f under pprof.Do with ctx's trace and span ids (and extra key, value pairs) added to
// the labels already in ctx; goroutines f starts inherit them. Without a span context (and no
// extra pairs) it just calls f(ctx).
func Do(ctx context.Context, f func(context.Context), extra ...string) {
	DoKeys(ctx, TraceAndSpan, f, extra...)
}

// DoKeys is Do with a choice of keys.
func DoKeys(ctx context.Context, keys Keys, f func(context.Context), extra ...string) {
	if len(extra)%2 != 0 {
		panic("correlate: odd number of extra label arguments")
	}
	l := Labels(ctx, keys, extra...)
	if len(l) == 0 {
		f(ctx)
		return
	}
	pprof.Do(ctx, pprof.Labels(l...), f)
}

// Go starts f in a new goroutine labelled with ctx's trace and span ids.
func Go(ctx context.Context, f func(context.Context), extra ...string) {
	Do(ctx, func(ctx context.Context) { go f(ctx) }, extra...)
}

// Middleware runs next under Do with the request context's ids: every goroutine a handler
// starts carries the trace of the request it served. Put it inside the tracing middleware
// (which puts the span into the request context).
func Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		Do(r.Context(), func(ctx context.Context) { next.ServeHTTP(w, r.WithContext(ctx)) })
	})
}
