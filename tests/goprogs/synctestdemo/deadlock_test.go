package synctestdemo

import (
	"os"
	"sync"
	"testing"
	"testing/synctest"
)

// TestBubbleDeadlock waits for a cache whose Close was forgotten: every
// goroutine in the bubble is durably blocked, so synctest reports a deadlock
// and prints the bubble's goroutines.
func TestBubbleDeadlock(t *testing.T) {
	if os.Getenv("LEAKY_SYNCTEST_DEADLOCK") != "1" {
		t.Skip("set LEAKY_SYNCTEST_DEADLOCK=1 to deadlock a synctest bubble on purpose")
	}
	synctest.Test(t, func(t *testing.T) {
		c := NewCache()
		var mu sync.Mutex
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			c.Wait() // never returns: Close was forgotten
		}()
		wg.Wait()
	})
}
