package main

import "testing"

func TestParseLeakSpecs(t *testing.T) {
	specs, err := parseLeakSpecs("chansend:5, httpbody:2/s,select:10@0.5/s,timer:1/m")
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name  string
		total int
		rate  float64
	}{
		{"chansend", 5, 0},
		{"httpbody", -1, 2},
		{"select", 10, 0.5},
		{"ticker", -1, 1.0 / 60},
	}
	if len(specs) != len(want) {
		t.Fatalf("got %d specs, want %d", len(specs), len(want))
	}
	for i, w := range want {
		s := specs[i]
		if s.p.name != w.name || s.total != w.total || s.rate != w.rate {
			t.Errorf("spec %d = {%s %d %g}, want %+v", i, s.p.name, s.total, s.rate, w)
		}
	}
	for _, bad := range []string{"chansend", "nope:1", "chansend:-1", "chansend:x", "chansend:1/h", "chansend:0/s", "chansend:3@"} {
		if _, err := parseLeakSpecs(bad); err == nil {
			t.Errorf("parseLeakSpecs(%q) succeeded, want error", bad)
		}
	}
	if specs, err := parseLeakSpecs(""); err != nil || specs != nil {
		t.Errorf("empty spec: %v, %v", specs, err)
	}
}

func TestPatternsDistinct(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range patterns {
		if seen[p.name] || p.handler == "" || p.route == "" || p.spawn == nil {
			t.Errorf("pattern %q duplicated or incomplete", p.name)
		}
		seen[p.name] = true
	}
}
