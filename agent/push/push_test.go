package push

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/leakhound/leakhound/agent/push/pushpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// server is a Push service for the client's own tests (the real one, leakhound serve, is
// exercised from tests/it/agent.rs): it records what arrives, acknowledges when told.
type server struct {
	pushpb.UnimplementedPushServer
	credit uint32
	ackNow bool // acknowledge each snapshot as it arrives

	mu       sync.Mutex
	got      []uint64 // seqs received, resends included
	tokens   []string
	arrived  chan struct{}
	maxAhead int // most snapshots received ahead of acknowledgements
}

func (s *server) Stream(st pushpb.Push_StreamServer) error {
	md, _ := metadata.FromIncomingContext(st.Context())
	s.mu.Lock()
	s.tokens = append(s.tokens, md.Get("authorization")...)
	s.mu.Unlock()
	if len(md.Get("authorization")) == 0 || md.Get("authorization")[0] != "Bearer t0k" {
		return status.Error(codes.Unauthenticated, "no")
	}
	if err := st.Send(&pushpb.Control{Credit: s.credit}); err != nil {
		return err
	}
	ahead := 0
	for {
		m, err := st.Recv()
		if err != nil {
			return err
		}
		ahead++
		s.mu.Lock()
		s.got = append(s.got, m.Seq)
		s.maxAhead = max(s.maxAhead, ahead)
		ack := s.ackNow
		s.mu.Unlock()
		select {
		case s.arrived <- struct{}{}:
		default:
		}
		if ack {
			ahead = 0
			if err := st.Send(&pushpb.Control{AckSeq: m.Seq, Credit: s.credit, Lamport: 1000}); err != nil {
				return err
			}
		}
	}
}

func (s *server) seqs() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint64(nil), s.got...)
}

func listen(t *testing.T, s *server) (string, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	pushpb.RegisterPushServer(g, s)
	go func() { _ = g.Serve(ln) }()
	return ln.Addr().String(), g.Stop
}

func newPusher(t *testing.T, addr string, o Options) *Pusher {
	t.Helper()
	o.Addr = addr
	o.Token = "t0k"
	o.Target = Target{Namespace: "shop", Pod: "orders-0"}
	o.BackoffMin = 10 * time.Millisecond
	o.BackoffMax = 50 * time.Millisecond
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func TestNewNeedsTargetAndCredentials(t *testing.T) {
	if _, err := New(Options{Addr: "x:1", Target: Target{Namespace: "a", Pod: "b"}}); err == nil {
		t.Fatal("no credentials accepted")
	}
	if _, err := New(Options{Addr: "x:1", Token: "t"}); err == nil {
		t.Fatal("no target accepted")
	}
}

func TestSnapshotsCarrySeqLamportAndProfiles(t *testing.T) {
	p := newPusher(t, "127.0.0.1:1", Options{})
	p.Capture()
	p.Capture()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.buf) != 2 {
		t.Fatalf("buffered %d", len(p.buf))
	}
	a, b := p.buf[0].snap, p.buf[1].snap
	if a.Seq != 1 || b.Seq != 2 || b.Lamport <= a.Lamport {
		t.Fatalf("seq %d %d lamport %d %d", a.Seq, b.Seq, a.Lamport, b.Lamport)
	}
	if !bytesHasPrefix(a.Debug1, "goroutine profile: total ") {
		t.Fatalf("debug1: %.40q", a.Debug1)
	}
	// The first snapshot has a full dump (the ids start there), the second not (no growth).
	if !bytesHasPrefix(a.Debug2, "goroutine ") || len(b.Debug2) != 0 {
		t.Fatalf("debug2: %.40q / %d bytes", a.Debug2, len(b.Debug2))
	}
	if a.AgentId == "" || a.AgentId != b.AgentId || a.Target.Pod != "orders-0" {
		t.Fatalf("identity %q %v", a.AgentId, a.Target)
	}
}

func bytesHasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }

func TestBufferIsBoundedDebug2First(t *testing.T) {
	p := newPusher(t, "127.0.0.1:1", Options{Buffer: 3})
	for range 5 {
		p.Capture()
	}
	s := p.Stats()
	if s.Buffered != 3 || s.Dropped != 2 || s.Captured != 5 {
		t.Fatalf("%+v", s)
	}
	p.mu.Lock()
	if p.buf[0].snap.Seq != 3 {
		t.Fatalf("oldest kept %d", p.buf[0].snap.Seq)
	}
	p.mu.Unlock()

	// Over the bytes: the debug=2 body goes before any snapshot does.
	q := newPusher(t, "127.0.0.1:1", Options{})
	q.Capture()
	q.mu.Lock()
	d1 := len(q.buf[0].snap.Debug1)
	q.o.BufferBytes = 2*d1 + 512
	q.mu.Unlock()
	q.Capture()
	s = q.Stats()
	if s.Debug2Shed != 1 || s.Dropped != 0 || s.Buffered != 2 {
		t.Fatalf("%+v", s)
	}
}

func TestCreditBoundsWhatIsInFlight(t *testing.T) {
	srv := &server{credit: 2, arrived: make(chan struct{}, 1)}
	addr, stop := listen(t, srv)
	defer stop()
	p := newPusher(t, addr, Options{})
	for range 6 {
		p.Capture()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.SendLoop(ctx); close(done) }()
	for len(srv.seqs()) < 2 {
		<-srv.arrived
	}
	// Without acknowledgements nothing more is sent: the stream is idle with 2 in flight.
	cancel()
	<-done
	if got := srv.seqs(); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("sent %v", got)
	}
}

func TestResendAfterReconnectAndAckDrains(t *testing.T) {
	srv := &server{credit: 4, ackNow: false, arrived: make(chan struct{}, 16)}
	addr, stop := listen(t, srv)
	p := newPusher(t, addr, Options{})
	for range 3 {
		p.Capture()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = p.SendLoop(ctx) }()
	for len(srv.seqs()) < 3 {
		<-srv.arrived
	}
	// The server goes away without acknowledging; a new one acknowledges: everything is sent
	// again, oldest first, and the buffer drains.
	stop()
	srv2 := &server{credit: 4, ackNow: true, arrived: make(chan struct{}, 16)}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port reuse: %v", err)
	}
	g := grpc.NewServer()
	pushpb.RegisterPushServer(g, srv2)
	go func() { _ = g.Serve(ln) }()
	defer g.Stop()
	fctx, fcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer fcancel()
	if err := p.Flush(fctx); err != nil {
		t.Fatalf("flush: %v (%+v)", err, p.Stats())
	}
	got := srv2.seqs()
	if len(got) != 3 || got[0] != 1 || got[2] != 3 {
		t.Fatalf("resent %v", got)
	}
	s := p.Stats()
	if s.Acked != 3 || s.Buffered != 0 || s.Connects < 2 {
		t.Fatalf("%+v", s)
	}
	p.mu.Lock()
	lam := p.lamport
	p.mu.Unlock()
	if lam < 1000 {
		t.Fatalf("lamport %d did not follow the server's", lam)
	}
}

func TestWrongTokenIsRetriedNotSent(t *testing.T) {
	srv := &server{credit: 4, ackNow: true, arrived: make(chan struct{}, 16)}
	addr, stop := listen(t, srv)
	defer stop()
	o := Options{Addr: addr, Token: "wrong", Target: Target{Namespace: "a", Pod: "b"},
		BackoffMin: 5 * time.Millisecond, BackoffMax: 10 * time.Millisecond}
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Capture()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_ = p.SendLoop(ctx)
	if s := p.Stats(); s.Acked != 0 || s.Buffered != 1 || len(srv.seqs()) != 0 {
		t.Fatalf("%+v %v", s, srv.seqs())
	}
}
