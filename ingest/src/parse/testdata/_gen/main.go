// Program gs parks goroutines in every shape the parsers must read (labels with escapes,
// generics, method receivers, deep recursion for `...N frames elided...`, locked threads, nil
// channels, empty selects) and writes its own goroutine profiles, or dies in the way asked.
// See gen.sh.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"time"
)

type T struct{ mu sync.Mutex }

func (t *T) lockForever(wg *sync.WaitGroup) { wg.Done(); t.mu.Lock() }

type G[K comparable, V any] struct{ m map[K]V }

func (g *G[K, V]) wait(ch chan V) { <-ch }

func Generic[T any](ch chan T) { var z T; ch <- z }

func recurse(n int, ch chan int) int {
	if n == 0 {
		<-ch
		return 0
	}
	return recurse(n-1, ch) + 1
}

func main() {
	mode := ""
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	blk := make(chan int)
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		go func() { blk <- i }()
	}
	go func() { <-blk }()
	go func() { select {} }()
	go func() { var c chan int; <-c }()
	go func() {
		ctx := pprof.WithLabels(context.Background(), pprof.Labels("handler", "/api/orders", "k\"x", "v\n\x01é"))
		pprof.SetGoroutineLabels(ctx)
		wg.Add(1)
		go func() { wg.Done(); select { case <-blk: case <-time.After(time.Hour): } }()
		<-ctx.Done()
	}()
	t := &T{}
	t.mu.Lock()
	wg.Add(1)
	go t.lockForever(&wg)
	g := &G[string, int]{}
	go g.wait(blk)
	go Generic[string](make(chan string))
	go recurse(120, blk)
	go func() { runtime.LockOSThread(); time.Sleep(time.Hour) }()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { l.Accept() }()
	var wg2 sync.WaitGroup
	wg2.Add(1)
	go func() { wg2.Wait() }()
	go func() {
		go func() { go func() { <-blk }() }()
	}()
	wg.Wait()
	time.Sleep(200 * time.Millisecond)
	switch mode {
	case "dump":
		dir := os.Args[2]
		for _, d := range []int{0, 1, 2} {
			f, _ := os.Create(fmt.Sprintf("%s/goroutine.debug%d.txt", dir, d))
			pprof.Lookup("goroutine").WriteTo(f, d)
			f.Close()
		}
		if p := pprof.Lookup("goroutineleak"); p != nil {
			for _, d := range []int{0, 1, 2} {
				f, _ := os.Create(fmt.Sprintf("%s/goroutineleak.debug%d.txt", dir, d))
				p.WriteTo(f, d)
				f.Close()
			}
		}
	case "gopanic":
		go func() { defer func() { blk <- 1 }(); panic(fmt.Sprintf("boom %d", 42)) }()
		time.Sleep(time.Second)
	case "panic":
		var m map[string]int
		m["x"] = 1
	case "nilderef":
		var p *T
		p.mu.Lock()
	case "deadlock":
		var c chan int
		go func() {}()
		<-c
	case "sigquit":
		syscallKill()
	}
}
