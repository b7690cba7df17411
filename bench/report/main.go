// Command report turns the raw per-run TSV written by bench/run.sh into one Markdown
// table per placement, with the median of the repeats for every cell. With -shortconn it
// renders the short-connection runs instead (shortconn.go).
//
// Raw columns (tab separated, header line first):
//
//	placement workload threads target rep status qps p95_ms p99_ms queries secs
//	proxy_cpu_us db_cpu_us steal_pct other_pct
//
// other_pct is the share of the machine (all CPUs) that processes other than the
// harness's used during the run: on a shared machine it tells which cells to distrust.
// status is "ok" or a short failure word; failed runs are left out of the medians.
// Each statistic's median is taken on its own (the median p99 may come from a
// different repeat than the median QPS); with an even number of repeats the median is
// the mean of the middle two. Targets other than direct, haproxy and switchyard (bench/relay's)
// get a table of ratios to HAProxy of their own (ratios.go).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
)

var targets = []string{"direct", "haproxy", "switchyard"}

type key struct {
	placement, workload, target string
	threads                     int
}

// cellKey names one table row: all targets and repeats of a workload at a thread count.
type cellKey struct {
	placement, workload string
	threads             int
}

type runs struct {
	qps, p95, p99, proxyCPU []float64 // proxyCPU: µs per query
	failed                  int
}

func main() {
	raw := flag.String("raw", "", "raw TSV written by run.sh")
	swNote := flag.String("sw-note", "", "text for Switchyard cells with no runs (e.g. \"not built\")")
	shortconn := flag.String("shortconn", "", "render this short-connection TSV (bench/.out/shortconn.tsv) instead of -raw")
	flag.Parse()

	if *shortconn != "" {
		f, err := os.Open(*shortconn)
		if err == nil {
			var data map[string]*scRuns
			var order []string
			data, order, err = readShortconn(f)
			f.Close()
			if err == nil {
				writeShortconn(os.Stdout, data, order)
				return
			}
		}
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}

	f, err := os.Open(*raw)
	if err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
	defer f.Close()

	data := map[key]*runs{}
	var placements, workloads, extra []string
	threadsSeen := map[string][]int{}
	var stealSum, otherSum, otherMax float64
	var stealN, otherN int
	otherCell := map[cellKey]float64{} // highest other_pct of any run in the cell
	sc := bufio.NewScanner(f)
	header := true
	for sc.Scan() {
		if header {
			header = false
			continue
		}
		c := strings.Split(sc.Text(), "\t")
		if len(c) < 15 {
			continue
		}
		th, _ := strconv.Atoi(c[2])
		k := key{c[0], c[1], c[3], th}
		if !slices.Contains(targets, c[3]) {
			extra = appendNew(extra, c[3])
		}
		placements = appendNew(placements, c[0])
		workloads = appendNew(workloads, c[1])
		if !containsInt(threadsSeen[c[1]], th) {
			threadsSeen[c[1]] = append(threadsSeen[c[1]], th)
		}
		r := data[k]
		if r == nil {
			r = &runs{}
			data[k] = r
		}
		if c[14] != "-" {
			o := num(c[14])
			ck := cellKey{c[0], c[1], th}
			otherCell[ck] = max(otherCell[ck], o)
			otherSum += o
			otherN++
			otherMax = max(otherMax, o)
		}
		if c[5] != "ok" {
			r.failed++
			continue
		}
		qps, queries := num(c[6]), num(c[9])
		r.qps = append(r.qps, qps)
		r.p95 = append(r.p95, num(c[7]))
		r.p99 = append(r.p99, num(c[8]))
		if cpu := num(c[11]); c[11] != "-" && queries > 0 {
			r.proxyCPU = append(r.proxyCPU, cpu/queries)
		}
		if s := c[13]; s != "-" {
			stealSum += num(s)
			stealN++
		}
	}

	for _, pl := range placements {
		fmt.Printf("\n### Placement: %s\n\n", describe(pl))
		fmt.Println("| workload | thr | QPS direct | QPS haproxy | QPS switchyard | sw/haproxy | sw/direct | haproxy/direct | p95 ms d / h / s | p99 ms d / h / s | CPU µs/q haproxy | CPU µs/q switchyard | other load % |")
		fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
		for _, wl := range workloads {
			ths := threadsSeen[wl]
			sort.Ints(ths)
			for _, th := range ths {
				cell := func(t string, pick func(*runs) []float64, format string) string {
					r := data[key{pl, wl, t, th}]
					if r == nil {
						if t == "switchyard" && *swNote != "" {
							return *swNote
						}
						return "n/a"
					}
					v := pick(r)
					if len(v) == 0 {
						if r.failed > 0 {
							return "FAIL"
						}
						return "n/a"
					}
					s := fmt.Sprintf(format, median(v))
					if r.failed > 0 {
						s += fmt.Sprintf(" (%d fail)", r.failed)
					}
					return s
				}
				medOf := func(t string) (float64, bool) {
					r := data[key{pl, wl, t, th}]
					if r == nil || len(r.qps) == 0 {
						return 0, false
					}
					return median(r.qps), true
				}
				ratio := func(a, b string) string {
					x, ok1 := medOf(a)
					y, ok2 := medOf(b)
					if !ok1 || !ok2 || y == 0 {
						return "-"
					}
					return fmt.Sprintf("%.2f", x/y)
				}
				qps := func(r *runs) []float64 { return r.qps }
				p95 := func(r *runs) []float64 { return r.p95 }
				p99 := func(r *runs) []float64 { return r.p99 }
				cpu := func(r *runs) []float64 { return r.proxyCPU }
				lat := func(pick func(*runs) []float64) string {
					parts := make([]string, len(targets))
					for i, t := range targets {
						parts[i] = cell(t, pick, latFormat(pick(orEmpty(data[key{pl, wl, t, th}]))))
						if t == "switchyard" && data[key{pl, wl, t, th}] == nil {
							parts[i] = "-"
						}
					}
					return strings.Join(parts, " / ")
				}
				fmt.Printf("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.0f |\n",
					wl, th,
					cell("direct", qps, "%.0f"), cell("haproxy", qps, "%.0f"), cell("switchyard", qps, "%.0f"),
					ratio("switchyard", "haproxy"), ratio("switchyard", "direct"), ratio("haproxy", "direct"),
					lat(p95), lat(p99),
					cell("haproxy", cpu, "%.1f"), cell("switchyard", cpu, "%.1f"),
					otherCell[cellKey{pl, wl, th}])
			}
		}
	}
	writeAgainstHAProxy(os.Stdout, data, placements, workloads, threadsSeen, extra)
	if stealN > 0 {
		fmt.Printf("\nMean CPU steal during runs: %.1f%% (from /proc/stat; high steal means noisy numbers).\n", stealSum/float64(stealN))
	}
	if otherN > 0 {
		fmt.Printf("Other processes on the machine used %.1f%% of it on average during runs, %.0f%% at most (\"other load %%\": the highest of any run in that row; above ~10%% the row is disturbed, rerun it).\n", otherSum/float64(otherN), otherMax)
	}
}

func describe(pl string) string {
	switch pl {
	case "unpinned":
		return "unpinned (every process may run on CPUs 0-1)"
	case "pinned":
		return "pinned (MariaDB on CPU 0; sysbench and the proxy under test on CPU 1)"
	}
	return pl
}

func num(s string) float64 {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0
	}
	return v
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func appendNew(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// latFormat keeps three significant-ish digits: sub-millisecond latencies need µs
// resolution to tell a proxy hop apart, multi-second ones do not.
func latFormat(v []float64) string {
	if len(v) > 0 && median(v) >= 10 {
		return "%.1f"
	}
	return "%.3f"
}

func orEmpty(r *runs) *runs {
	if r == nil {
		return &runs{}
	}
	return r
}
