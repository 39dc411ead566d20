// Package synctestdemo holds a test that, when LEAKY_SYNCTEST_DEADLOCK=1,
// deadlocks inside a testing/synctest bubble on purpose so capture.sh can
// record the runtime's report ("synctest bubble N", "(durable)" states).
// Without the variable the test is skipped, so `go test ./...` stays green.
package synctestdemo

// Cache refreshes values in the background; its refresh loop waits for
// requests on a channel that the test never sends on.
type Cache struct {
	refresh chan string
	done    chan struct{}
}

// NewCache starts the refresh loop.
func NewCache() *Cache {
	c := &Cache{refresh: make(chan string), done: make(chan struct{})}
	go c.refreshLoop()
	return c
}

func (c *Cache) refreshLoop() {
	for key := range c.refresh {
		_ = key
	}
	close(c.done)
}

// Close is what the buggy caller forgets to do before waiting.
func (c *Cache) Close() { close(c.refresh) }

// Wait blocks until the refresh loop has exited.
func (c *Cache) Wait() { <-c.done }
