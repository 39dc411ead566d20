// Command gostackparse-bench parses a goroutine dump with github.com/DataDog/gostackparse and
// prints one JSON line: bytes, goroutines, frames, seconds, peak RSS. It is the baseline that
// leakhound's `parse_bench` (benches/parse_bench.rs) compares its debug=2 parser against, on
// the same file, in the same run.
//
//	go run . /tmp/dump.txt
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/DataDog/gostackparse"
)

type result struct {
	Parser     string  `json:"parser"`
	Bytes      int64   `json:"bytes"`
	Goroutines int     `json:"goroutines"`
	Frames     int     `json:"frames"`
	Errors     int     `json:"errors"`
	Seconds    float64 `json:"seconds"`
	CPUSeconds float64 `json:"cpu_seconds"`
	MaxRSSKB   int64   `json:"max_rss_kb"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gostackparse-bench FILE")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	start := time.Now()
	goroutines, errs := gostackparse.Parse(bufio.NewReaderSize(f, 1<<20))
	elapsed := time.Since(start)
	frames := 0
	for _, g := range goroutines {
		frames += len(g.Stack)
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	out, _ := json.Marshal(result{
		Parser:     "gostackparse",
		Bytes:      st.Size(),
		Goroutines: len(goroutines),
		Frames:     frames,
		Errors:     len(errs),
		Seconds:    elapsed.Seconds(),
		CPUSeconds: tv(ru.Utime) + tv(ru.Stime), // every thread, GC included
		MaxRSSKB:   ru.Maxrss,                   // kilobytes on Linux
	})
	fmt.Println(string(out))
}

func tv(t syscall.Timeval) float64 {
	return float64(t.Sec) + float64(t.Usec)/1e6
}
