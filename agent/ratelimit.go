package agent

import (
	"math"
	"sync"
	"time"
)

// limiter is a token bucket per client identity, with a bounded number of clients: when the
// table is full, buckets that have refilled (idle clients) are dropped; if none has, a new
// client is refused until one does, so a flood of identities cannot grow memory.
type limiter struct {
	mu      sync.Mutex
	rate    float64 // tokens per second
	burst   float64
	max     int
	now     func() time.Time
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst, maxClients int, now func() time.Time) *limiter {
	return &limiter{
		rate:    rate,
		burst:   float64(burst),
		max:     maxClients,
		now:     now,
		buckets: make(map[string]*bucket),
	}
}

// allow takes a token from id's bucket. When it cannot, it says how long until one is there.
func (l *limiter) allow(id string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.buckets[id]
	if !ok {
		if len(l.buckets) >= l.max {
			l.sweep(now)
		}
		if len(l.buckets) >= l.max {
			return false, time.Second
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[id] = b
	}
	l.refill(b, now)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration(math.Ceil((1 - b.tokens) / l.rate * float64(time.Second)))
	return false, wait
}

func (l *limiter) refill(b *bucket, now time.Time) {
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(l.burst, b.tokens+el*l.rate)
		b.last = now
	}
}

// sweep drops the buckets that are full again: forgetting them changes nothing.
func (l *limiter) sweep(now time.Time) {
	for id, b := range l.buckets {
		l.refill(b, now)
		if b.tokens >= l.burst {
			delete(l.buckets, id)
		}
	}
}

func (l *limiter) clients() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
