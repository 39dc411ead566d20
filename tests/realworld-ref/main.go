// Command realworld-ref is the reference parser of leakhound's real-world corpus test
// (tests/it/realworld.rs): it parses each file named on the command line with
// github.com/DataDog/gostackparse and prints one JSON object, file name → what that parser found
// (goroutines, their ids, goroutines by state, frames, `created by` sites, errors). The test puts
// leakhound's own reading of each file beside it.
//
//	go run . FILE...
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/DataDog/gostackparse"
)

type result struct {
	Goroutines int            `json:"goroutines"`
	IDs        []int          `json:"ids"`
	ByState    map[string]int `json:"by_state"`
	Frames     int            `json:"frames"`
	CreatedBy  int            `json:"created_by"`
	WaitOver0  int            `json:"wait_over_zero"`
	Errors     []string       `json:"errors"`
}

func main() {
	out := map[string]result{}
	for _, path := range os.Args[1:] {
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		gs, errs := gostackparse.Parse(f)
		f.Close()
		r := result{ByState: map[string]int{}, IDs: []int{}, Errors: []string{}}
		for _, g := range gs {
			r.Goroutines++
			r.IDs = append(r.IDs, g.ID)
			r.ByState[g.State]++
			r.Frames += len(g.Stack)
			if g.CreatedBy != nil {
				r.CreatedBy++
			}
			if g.Wait > 0 {
				r.WaitOver0++
			}
		}
		sort.Ints(r.IDs)
		for _, e := range errs {
			r.Errors = append(r.Errors, e.Error())
		}
		out[filepath.Base(filepath.Dir(path))+"/"+filepath.Base(path)] = r
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
