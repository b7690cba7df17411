package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// shortconnCols are the columns of bench/.out/shortconn.tsv, written by run.sh from
// bench/shortconn's output line and the /proc readings around it.
var shortconnCols = []string{"target", "rep", "status", "conns", "failed", "secs", "rate", "late",
	"p50_ms", "p95_ms", "p99_ms", "login_p50_ms", "login_p95_ms", "login_p99_ms",
	"proxy_cpu_us", "db_cpu_us", "steal_pct", "other_pct"}

// scRuns is one target's short-connection runs: per-run values, medians taken later.
type scRuns struct {
	conns, failed, late, runs, failedRuns int
	rate, p50, p95, p99, login50          []float64
	proxyCPU, dbCPU                       []float64 // µs per connection
	otherMax                              float64
}

// readShortconn reads the short-connection TSV (header first) into per-target runs,
// targets in order of first appearance. A run with status other than "ok" counts
// only as a failed run.
func readShortconn(r io.Reader) (map[string]*scRuns, []string, error) {
	data := map[string]*scRuns{}
	var order []string
	sc := bufio.NewScanner(r)
	col := map[string]int{}
	for line := 0; sc.Scan(); line++ {
		c := strings.Split(sc.Text(), "\t")
		if line == 0 {
			for i, name := range c {
				col[name] = i
			}
			for _, name := range shortconnCols {
				if _, ok := col[name]; !ok {
					return nil, nil, fmt.Errorf("shortconn TSV: no column %q in the header", name)
				}
			}
			continue
		}
		if len(c) < len(col) {
			return nil, nil, fmt.Errorf("shortconn TSV line %d: %d fields, want %d", line+1, len(c), len(col))
		}
		get := func(name string) string { return c[col[name]] }
		t := get("target")
		d := data[t]
		if d == nil {
			d = &scRuns{}
			data[t] = d
			order = append(order, t)
		}
		d.runs++
		if o := get("other_pct"); o != "-" {
			d.otherMax = max(d.otherMax, num(o))
		}
		if get("status") != "ok" {
			d.failedRuns++
			continue
		}
		conns := num(get("conns"))
		d.conns += int(conns)
		d.failed += int(num(get("failed")))
		d.late += int(num(get("late")))
		d.rate = append(d.rate, num(get("rate")))
		d.p50 = append(d.p50, num(get("p50_ms")))
		d.p95 = append(d.p95, num(get("p95_ms")))
		d.p99 = append(d.p99, num(get("p99_ms")))
		d.login50 = append(d.login50, num(get("login_p50_ms")))
		if conns > 0 {
			if p := get("proxy_cpu_us"); p != "-" {
				d.proxyCPU = append(d.proxyCPU, num(p)/conns)
			}
			d.dbCPU = append(d.dbCPU, num(get("db_cpu_us"))/conns)
		}
	}
	return data, order, sc.Err()
}

// writeShortconn prints the short-connection tables: one row per target with the
// medians of its runs, then the ratios of the medians.
func writeShortconn(w io.Writer, data map[string]*scRuns, order []string) {
	med := func(v []float64, format string) string {
		if len(v) == 0 {
			return "-"
		}
		return fmt.Sprintf(format, median(v))
	}
	fmt.Fprintln(w, "| target | conns (failed) | conn/s | connect to first result p50 / p95 / p99 ms | login p50 ms | proxy CPU µs/conn | MariaDB CPU µs/conn | other load % |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, t := range order {
		d := data[t]
		conns := fmt.Sprintf("%d (%d)", d.conns, d.failed)
		if d.failedRuns > 0 {
			conns += fmt.Sprintf(", %d of %d runs FAILED", d.failedRuns, d.runs)
		}
		if d.late > 0 {
			conns += fmt.Sprintf(", %d late", d.late)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s / %s / %s | %s | %s | %s | %.0f |\n", t, conns, med(d.rate, "%.1f"),
			med(d.p50, "%.3f"), med(d.p95, "%.3f"), med(d.p99, "%.3f"), med(d.login50, "%.3f"),
			med(d.proxyCPU, "%.0f"), med(d.dbCPU, "%.0f"), d.otherMax)
	}
	ratio := func(a, b string, pick func(*scRuns) []float64) string {
		x, y := data[a], data[b]
		if x == nil || y == nil || len(pick(x)) == 0 || len(pick(y)) == 0 || median(pick(y)) == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", median(pick(x))/median(pick(y)))
	}
	cpu := func(d *scRuns) []float64 { return d.proxyCPU }
	p50 := func(d *scRuns) []float64 { return d.p50 }
	p95 := func(d *scRuns) []float64 { return d.p95 }
	p99 := func(d *scRuns) []float64 { return d.p99 }
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| ratio of medians | proxy CPU per conn | p50 | p95 | p99 |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	for _, pair := range [][2]string{{"switchyard", "haproxy"}, {"switchyard", "direct"}, {"haproxy", "direct"}} {
		a, b := pair[0], pair[1]
		fmt.Fprintf(w, "| %s / %s | %s | %s | %s | %s |\n", a, b,
			ratio(a, b, cpu), ratio(a, b, p50), ratio(a, b, p95), ratio(a, b, p99))
	}
}
