package main

import (
	"fmt"
	"io"
	"sort"
)

// writeAgainstHAProxy prints, when the runs include targets beyond direct, HAProxy and
// Switchyard (bench/relay's relay-epoll and relay-go), one table per placement that sets
// every proxy beside HAProxy in the same rows: QPS, p95, p99 and CPU per query, each as a
// ratio to HAProxy's median. It prints nothing when there are no such targets.
func writeAgainstHAProxy(w io.Writer, data map[key]*runs, placements, workloads []string, threadsSeen map[string][]int, extra []string) {
	if len(extra) == 0 {
		return
	}
	proxies := append([]string{"switchyard"}, extra...)
	for _, pl := range placements {
		fmt.Fprintf(w, "\n### Against HAProxy, %s\n\n", pl)
		fmt.Fprintln(w, "| workload | thr | target | QPS | QPS / haproxy | p95 / haproxy | p99 / haproxy | CPU µs/q | CPU / haproxy |")
		fmt.Fprintln(w, "|---|---:|---|---:|---:|---:|---:|---:|---:|")
		for _, wl := range workloads {
			ths := append([]int(nil), threadsSeen[wl]...)
			sort.Ints(ths)
			for _, th := range ths {
				ha := data[key{pl, wl, "haproxy", th}]
				for _, t := range proxies {
					r := data[key{pl, wl, t, th}]
					if r == nil || len(r.qps) == 0 {
						continue
					}
					fmt.Fprintf(w, "| %s | %d | %s | %.0f | %s | %s | %s | %s | %s |\n", wl, th, t, median(r.qps),
						ratioOf(r.qps, ha, func(h *runs) []float64 { return h.qps }),
						ratioOf(r.p95, ha, func(h *runs) []float64 { return h.p95 }),
						ratioOf(r.p99, ha, func(h *runs) []float64 { return h.p99 }),
						medianOr(r.proxyCPU, "%.1f"),
						ratioOf(r.proxyCPU, ha, func(h *runs) []float64 { return h.proxyCPU }))
				}
			}
		}
	}
}

// ratioOf is median(v) / median(pick(ha)), or "-" when either side has no value.
func ratioOf(v []float64, ha *runs, pick func(*runs) []float64) string {
	if ha == nil || len(v) == 0 || len(pick(ha)) == 0 || median(pick(ha)) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", median(v)/median(pick(ha)))
}

func medianOr(v []float64, format string) string {
	if len(v) == 0 {
		return "-"
	}
	return fmt.Sprintf(format, median(v))
}
