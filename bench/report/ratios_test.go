package main

import (
	"strings"
	"testing"
)

func TestWriteAgainstHAProxy(t *testing.T) {
	data := map[key]*runs{
		{"unpinned", "point_select", "haproxy", 8}:     {qps: []float64{100, 120, 110}, p95: []float64{1, 1, 1}, p99: []float64{2, 2, 2}, proxyCPU: []float64{20, 30, 25}},
		{"unpinned", "point_select", "switchyard", 8}:  {qps: []float64{90, 80, 88}, p95: []float64{2, 2, 3}, p99: []float64{5, 5, 5}, proxyCPU: []float64{40, 40, 40}},
		{"unpinned", "point_select", "relay-epoll", 8}: {qps: []float64{121}, p95: []float64{0.5}, p99: []float64{1}, proxyCPU: []float64{20}},
		{"unpinned", "point_select", "relay-go", 8}:    {failed: 1},
	}
	var b strings.Builder
	writeAgainstHAProxy(&b, data, []string{"unpinned"}, []string{"point_select"}, map[string][]int{"point_select": {8}}, []string{"relay-epoll", "relay-go"})
	out := b.String()
	for _, want := range []string{
		"| point_select | 8 | switchyard | 88 | 0.80 | 2.00 | 2.50 | 40.0 | 1.60 |",
		"| point_select | 8 | relay-epoll | 121 | 1.10 | 0.50 | 0.50 | 20.0 | 0.80 |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing row %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "relay-go") {
		t.Errorf("a target with only failed runs got a row:\n%s", out)
	}
	b.Reset()
	writeAgainstHAProxy(&b, data, []string{"unpinned"}, []string{"point_select"}, map[string][]int{"point_select": {8}}, nil)
	if b.Len() != 0 {
		t.Errorf("printed without extra targets: %q", b.String())
	}
}
