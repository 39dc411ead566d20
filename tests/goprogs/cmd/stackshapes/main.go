// Command stackshapes parks goroutines whose stacks each dump format prints differently, for
// leakhound's cross-format stack id test (tests/it/realworld.rs):
//
//   - started by a `go` statement with arguments: the compiler's `main.main.gowrapN` closure
//     is on the stack, shown only under GOTRACEBACK=system|crash and in SIGQUIT dumps;
//   - started through a method value: `main.(*T).park-fm` likewise;
//   - 97 frames deep: the traceback prints it whole at the default level, but cuts it
//     (`...N frames elided...`) where it counts the runtime frames, at the system level;
//   - 150 frames deep: cut everywhere (debug=0/1 keep the innermost 128 PCs);
//   - 30 frames deep: never cut.
//
// Usage: stackshapes dump DIR (writes goroutine.debug0.pb.gz, .debug1.txt, .debug2.txt and
// exits), or stackshapes quit (SIGQUITs itself: the runtime prints every goroutine to stderr at
// the GOTRACEBACK level of the environment and exits).
package main

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"
)

var (
	block = make(chan int)
	ready sync.WaitGroup
)

//go:noinline
func park(n int) int {
	ready.Done()
	return <-block + n
}

//go:noinline
func recurse(n int) int {
	if n == 0 {
		return park(0)
	}
	return recurse(n-1) + 1
}

// parkedAll returns once n goroutines are blocked receiving from a channel.
func parkedAll(n int) {
	buf := make([]byte, 1<<20)
	for {
		m := runtime.Stack(buf, true)
		if bytes.Count(buf[:m], []byte("[chan receive]:")) >= n {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

type T struct{ n int }

//go:noinline
func (t *T) park() { park(t.n) }

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: stackshapes dump DIR | quit")
		os.Exit(2)
	}
	for i := 0; i < 3; i++ {
		ready.Add(1)
		go park(i)
	}
	t := &T{n: 7}
	f := t.park
	for i := 0; i < 2; i++ {
		ready.Add(1)
		go f()
	}
	for _, depth := range []int{30, 97, 150} {
		ready.Add(1)
		go recurse(depth)
	}
	ready.Wait()
	// Done() runs just before the receive: wait until every parked goroutine is blocked in it,
	// so that no dump catches one on its way (a different top of stack).
	parkedAll(8)
	switch os.Args[1] {
	case "dump":
		dir := os.Args[2]
		for d, name := range []string{"goroutine.debug0.pb.gz", "goroutine.debug1.txt", "goroutine.debug2.txt"} {
			out, err := os.Create(dir + "/" + name)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			if err := pprof.Lookup("goroutine").WriteTo(out, d); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			out.Close()
		}
	case "quit":
		syscall.Kill(syscall.Getpid(), syscall.SIGQUIT)
		select {}
	}
}
