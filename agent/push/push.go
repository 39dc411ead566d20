// Package push streams the process's goroutine snapshots to `leakhound serve --push-listen`
// over gRPC (proto/leakhound/push/v1/push.proto; generated code in pushpb), for pods that
// leakhound cannot scrape (NetworkPolicies, other clusters). Pull-only users of the agent
// package do not link it.
//
//	p, err := push.New(push.Options{Addr: "leakhound-push.leakhound:9096",
//		TokenFile: "/var/run/secrets/leakhound/push-token",
//		Target: push.Target{Namespace: os.Getenv("POD_NAMESPACE"), Pod: os.Getenv("POD_NAME")}})
//	if err != nil { log.Fatal(err) }
//	go p.Run(ctx)
//
// Every Interval the Pusher captures a snapshot: the goroutine profile at debug=1, the
// container context (agent.Sampler), and a debug=2 dump when the server asked for one
// (Control.want_debug2) or the count grew past GrowthRatio and GrowthMin since the last one,
// and the fuse (agent.FuseOptions.Decide) allows it. Each snapshot gets the next sequence
// number (from 1, never reused; the agent id names the process) and a Lamport clock
// (max(own, the server's) + 1).
//
// Delivery is at-least-once: snapshots wait in a bounded buffer (Buffer snapshots,
// BufferBytes bytes; over either, debug=2 bodies are dropped first, then the oldest
// snapshots, counted in Stats.Dropped) until the server acknowledges them, which it does
// after its commit; on a reconnect everything unacknowledged is sent again, oldest first,
// and the server drops what it had already landed (exactly-once rows). While the server is
// away the Pusher retries with exponential backoff and jitter (BackoffMin..BackoffMax).
// Backpressure: at most Control.credit snapshots are in flight unacknowledged, gRPC's flow
// control holds a send the server is not reading, and Control.min_interval_ms stretches the
// capture interval.
package push

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/leakhound/leakhound/agent"
	"github.com/leakhound/leakhound/agent/push/pushpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// Target is who the snapshots are about (the rows' identity in the store).
type Target struct {
	Cluster, Namespace, WorkloadKind, Workload, Pod, Container, Node, Instance string
}

// Options configure a Pusher. Addr, Target.Namespace and Target.Pod are required, and a
// credential (Token, TokenFile, or TLS with a client certificate) unless InsecureNoAuth.
type Options struct {
	// Addr of serve's push listener, host:port.
	Addr string
	// Token or TokenFile (re-read at each connection) is sent as "authorization: Bearer".
	Token     string
	TokenFile string
	// TLS, when the listener serves TLS (nil: plaintext HTTP/2).
	TLS            *tls.Config
	InsecureNoAuth bool
	Target         Target
	// Interval between captures (default 10 s).
	Interval time.Duration
	// Buffer: unacknowledged snapshots held at most (default 360: an hour at 10 s).
	Buffer int
	// BufferBytes: their bodies' bytes at most (default 64 MiB).
	BufferBytes int
	// A debug=2 dump is taken when goroutines grew by GrowthRatio (default 1.2) and by
	// GrowthMin (default 20) since the last one, or when the server asks.
	GrowthRatio float64
	GrowthMin   int
	// Fuse bounds debug=2 dumps as the handler's fuse does.
	Fuse agent.FuseOptions
	// Sampler of the container context (default agent.NewSampler("", "")).
	Sampler *agent.Sampler
	// BackoffMin, BackoffMax bound the wait between reconnections (default 200 ms, 30 s).
	BackoffMin, BackoffMax time.Duration
	// AgentID names this process (default namespace/pod/container/pid/start time).
	AgentID string
	// WriteProfile writes the goroutine profile at debug 1 or 2 (default runtime/pprof's). The
	// push bench shares one capture among its 1,000 agents of one process with it.
	WriteProfile func(w io.Writer, debug int) error
	// NoDebug2: never take a debug=2 dump (debug=1 only, whatever the server asks).
	NoDebug2 bool
	// OnAck, when set, is called (without locks held) for each snapshot acknowledged, with the
	// time since its capture: what the bench's acknowledgement latency is.
	OnAck func(seq uint64, sinceCapture time.Duration)
	// Now is the clock that stamps each snapshot's capture time (and OnAck's durations are
	// measured on it). Default time.Now; a test replaying minutes in seconds gives its own.
	Now func() time.Time
}

// Stats are the Pusher's counters.
type Stats struct {
	Captured   uint64 // snapshots taken (the last sequence number)
	Acked      uint64 // highest sequence number the server acknowledged
	Dropped    uint64 // snapshots dropped from a full buffer
	Rejected   uint64 // snapshots the server refused for good
	Debug2     uint64 // debug=2 dumps taken
	Debug2Shed uint64 // debug=2 bodies dropped from a full buffer
	Buffered   int    // snapshots waiting for their acknowledgement
	Connects   uint64 // streams opened
	LastError  string // why the last stream ended ("" while none did)
}

// MaxSnapshotBytes bounds one snapshot's bodies (serve's message limit is 32 MiB).
const MaxSnapshotBytes = 30 << 20

// processStart approximates the process start (package initialisation).
var processStart = time.Now()

type entry struct {
	snap *pushpb.Snapshot
	size int
}

// Pusher captures and sends snapshots; make it with New.
type Pusher struct {
	o      Options
	client *grpc.ClientConn

	mu        sync.Mutex
	buf       []*entry // unacknowledged, in seq order
	bytes     int
	seq       uint64
	lamport   uint64
	wantD2    bool
	lastD2    int // goroutines at the last debug=2 dump (-1: none yet)
	minEvery  time.Duration
	stats     Stats
	changed   chan struct{} // closed and replaced when buf or the acknowledgements change
	fullDumps chan struct{}
}

// New checks the options and prepares the connection (dialled lazily).
func New(o Options) (*Pusher, error) {
	if o.Addr == "" || o.Target.Namespace == "" || o.Target.Pod == "" {
		return nil, errors.New("push: Addr, Target.Namespace and Target.Pod are required")
	}
	if o.Token == "" && o.TokenFile == "" && !o.InsecureNoAuth &&
		(o.TLS == nil || (len(o.TLS.Certificates) == 0 && o.TLS.GetClientCertificate == nil)) {
		return nil, errors.New("push: no credentials: set Token, TokenFile or a TLS client certificate (or InsecureNoAuth)")
	}
	if o.Interval <= 0 {
		o.Interval = 10 * time.Second
	}
	if o.Buffer <= 0 {
		o.Buffer = 360
	}
	if o.BufferBytes <= 0 {
		o.BufferBytes = 64 << 20
	}
	if o.GrowthRatio <= 1 {
		o.GrowthRatio = 1.2
	}
	if o.GrowthMin <= 0 {
		o.GrowthMin = 20
	}
	if o.WriteProfile == nil {
		o.WriteProfile = pprof.Lookup("goroutine").WriteTo
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sampler == nil {
		o.Sampler = agent.NewSampler("", "")
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = 200 * time.Millisecond
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = 30 * time.Second
	}
	if o.AgentID == "" {
		o.AgentID = fmt.Sprintf("%s/%s/%s/%d/%d", o.Target.Namespace, o.Target.Pod,
			o.Target.Container, os.Getpid(), processStart.UnixNano())
	}
	creds := insecure.NewCredentials()
	if o.TLS != nil {
		creds = credentials.NewTLS(o.TLS)
	}
	conn, err := grpc.NewClient(o.Addr, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(32<<20)))
	if err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	return &Pusher{o: o, client: conn, lastD2: -1, changed: make(chan struct{}), fullDumps: make(chan struct{}, 1)}, nil
}

// Close releases the connection.
func (p *Pusher) Close() error { return p.client.Close() }

// Stats returns the counters now.
func (p *Pusher) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Buffered = len(p.buf)
	return s
}

// notify wakes whoever waits on a change (p.mu held).
func (p *Pusher) notify() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Capture takes one snapshot now and queues it.
func (p *Pusher) Capture() {
	sample := p.o.Sampler.Sample()
	var d1 bytes.Buffer
	_ = p.o.WriteProfile(&d1, 1)
	now := p.o.Now()

	p.mu.Lock()
	want := !p.o.NoDebug2 && (p.wantD2 || p.lastD2 < 0 ||
		(sample.Goroutines-p.lastD2 >= p.o.GrowthMin && float64(sample.Goroutines) >= float64(p.lastD2)*p.o.GrowthRatio))
	p.mu.Unlock()
	var d2 []byte
	if want && p.o.Fuse.Decide(sample).Full {
		select {
		case p.fullDumps <- struct{}{}:
			var b bytes.Buffer
			_ = p.o.WriteProfile(&b, 2)
			<-p.fullDumps
			d2 = b.Bytes()
		default:
		}
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	// One snapshot is one gRPC message: within what serve accepts (32 MiB), or it would be
	// refused again at every resend. The full dump goes first; a debug=1 profile that large
	// (it aggregates by stack) is not sent at all.
	if d1.Len()+len(d2) > MaxSnapshotBytes && d2 != nil {
		d2 = nil
		p.stats.Debug2Shed++
	}
	if d1.Len() > MaxSnapshotBytes {
		p.stats.Dropped++
		return
	}
	p.seq++
	p.lamport++
	if d2 != nil {
		p.wantD2 = false
		p.lastD2 = sample.Goroutines
		p.stats.Debug2++
	}
	s := &pushpb.Snapshot{
		AgentId:            p.o.AgentID,
		Seq:                p.seq,
		Lamport:            p.lamport,
		CapturedUnixUs:     now.UnixMicro(),
		Target:             target(p.o.Target),
		Debug1:             d1.Bytes(),
		Debug2:             d2,
		Context:            context_(sample),
		ProcessStartUnixUs: processStart.UnixMicro(),
		Dropped:            p.stats.Dropped,
	}
	e := &entry{snap: s, size: len(s.Debug1) + len(s.Debug2)}
	p.buf = append(p.buf, e)
	p.bytes += e.size
	p.stats.Captured = p.seq
	p.shed()
	p.notify()
}

// shed keeps the buffer within its bounds: debug=2 bodies go first (oldest first), then the
// oldest snapshots (p.mu held).
func (p *Pusher) shed() {
	for i := 0; i < len(p.buf) && p.bytes > p.o.BufferBytes; i++ {
		if e := p.buf[i]; len(e.snap.Debug2) > 0 && i < len(p.buf)-1 {
			p.bytes -= len(e.snap.Debug2)
			e.size -= len(e.snap.Debug2)
			e.snap.Debug2 = nil
			p.stats.Debug2Shed++
		}
	}
	for len(p.buf) > 1 && (len(p.buf) > p.o.Buffer || p.bytes > p.o.BufferBytes) {
		p.bytes -= p.buf[0].size
		p.buf = p.buf[1:]
		p.stats.Dropped++
	}
}

func target(t Target) *pushpb.Target {
	return &pushpb.Target{Cluster: t.Cluster, Namespace: t.Namespace, WorkloadKind: t.WorkloadKind,
		Workload: t.Workload, Pod: t.Pod, Container: t.Container, Node: t.Node, Instance: t.Instance}
}

func context_(s agent.Sample) *pushpb.Context {
	c := &pushpb.Context{Threads: s.Process.Threads, VmRssBytes: s.Process.VmRSSBytes}
	if g := s.Cgroup; g != nil {
		c.MemoryCurrentBytes = g.MemoryCurrent
		c.MemoryMaxBytes = g.MemoryMax
		c.CpuThrottledUsec = g.CPUThrottledUsec
		c.PidsCurrent = g.PidsCurrent
	}
	return c
}

type acked struct {
	seq uint64
	at  int64 // capture, Unix µs
}

// ack drops what the server acknowledged (p.mu held); it returns what it dropped as
// acknowledged when OnAck wants to know (call reportAcks after unlocking).
func (p *Pusher) ack(c *pushpb.Control) []acked {
	var out []acked
	if c.Lamport > p.lamport {
		p.lamport = c.Lamport
	}
	if c.WantDebug2 {
		p.wantD2 = true
	}
	p.minEvery = time.Duration(c.MinIntervalMs) * time.Millisecond
	if c.AckSeq > p.stats.Acked {
		p.stats.Acked = c.AckSeq
	}
	keep := p.buf[:0]
	for _, e := range p.buf {
		gone := e.snap.Seq <= c.AckSeq
		if c.RejectedSeq != 0 && e.snap.Seq == c.RejectedSeq {
			gone = true
			p.stats.Rejected++
		}
		if gone {
			p.bytes -= e.size
			if p.o.OnAck != nil && e.snap.Seq <= c.AckSeq {
				out = append(out, acked{e.snap.Seq, e.snap.CapturedUnixUs})
			}
		} else {
			keep = append(keep, e)
		}
	}
	p.buf = keep
	p.notify()
	return out
}

func (p *Pusher) reportAcks(a []acked) {
	now := p.o.Now().UnixMicro()
	for _, x := range a {
		p.o.OnAck(x.seq, time.Duration(now-x.at)*time.Microsecond)
	}
}

func (p *Pusher) token() (string, error) {
	if p.o.Token != "" {
		return p.o.Token, nil
	}
	if p.o.TokenFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(p.o.TokenFile)
	if err != nil {
		return "", err
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", errors.New("push: empty token file")
	}
	return t, nil
}

// Run captures every Interval and keeps a stream to the server open, until ctx ends.
func (p *Pusher) Run(ctx context.Context) error {
	go p.captureLoop(ctx)
	return p.SendLoop(ctx)
}

func (p *Pusher) captureLoop(ctx context.Context) {
	for {
		p.Capture()
		p.mu.Lock()
		every := max(p.o.Interval, p.minEvery)
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// SendLoop sends what is buffered (without capturing: see Capture), reconnecting with
// backoff, until ctx ends.
func (p *Pusher) SendLoop(ctx context.Context) error {
	backoff := p.o.BackoffMin
	for ctx.Err() == nil {
		healthy, err := p.stream(ctx)
		if ctx.Err() != nil {
			break
		}
		if healthy {
			backoff = p.o.BackoffMin
		}
		if err != nil {
			p.mu.Lock()
			p.stats.LastError = err.Error()
			p.mu.Unlock()
		}
		// Full jitter: a fleet that lost its server does not come back in step.
		wait := time.Duration(rand.Int64N(int64(backoff))) + backoff/2
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		backoff = min(backoff*2, p.o.BackoffMax)
	}
	return ctx.Err()
}

// stream runs one stream until it fails; healthy when the server answered on it.
func (p *Pusher) stream(ctx context.Context) (healthy bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tok, err := p.token()
	if err != nil {
		return false, err
	}
	if tok != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	}
	st, err := pushpb.NewPushClient(p.client).Stream(ctx)
	if err != nil {
		return false, err
	}
	p.mu.Lock()
	p.stats.Connects++
	p.mu.Unlock()
	// The server's first message is the credit.
	first, err := st.Recv()
	if err != nil {
		return false, err
	}
	credit := int(max(first.Credit, 1))
	p.mu.Lock()
	p.ack(first)
	p.mu.Unlock()

	recvErr := make(chan error, 1)
	go func() {
		for {
			c, err := st.Recv()
			if err != nil {
				recvErr <- err
				cancel()
				return
			}
			p.mu.Lock()
			if c.Credit > 0 {
				credit = int(c.Credit)
			}
			a := p.ack(c)
			p.mu.Unlock()
			p.reportAcks(a)
		}
	}()

	var sent uint64 // highest seq sent on this stream
	for {
		p.mu.Lock()
		var next *pushpb.Snapshot
		inflight := 0
		for _, e := range p.buf {
			if e.snap.Seq <= sent {
				inflight++
			} else if next == nil {
				next = e.snap
			}
		}
		changed := p.changed
		canSend := next != nil && inflight < credit
		p.mu.Unlock()
		if canSend {
			// Send blocks while HTTP/2 flow control says the server is not reading.
			if err := st.Send(next); err != nil {
				cancel()
				return true, err
			}
			sent = next.Seq
			continue
		}
		select {
		case <-changed:
		case err := <-recvErr:
			return true, err
		case <-ctx.Done():
			_ = st.CloseSend()
			return true, ctx.Err()
		}
	}
}

// Flush waits until every captured snapshot is acknowledged (or rejected), or ctx ends.
func (p *Pusher) Flush(ctx context.Context) error {
	for {
		p.mu.Lock()
		n, changed := len(p.buf), p.changed
		p.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}
