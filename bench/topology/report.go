package main

import (
	"fmt"
	"io"
	"time"
)

// The report is Markdown: bench/run.sh pastes it into results.md, and
// docs/benchmarks.md quotes it.

func (r *latencyResult) write(w io.Writer) {
	fmt.Fprintf(w, "## Registration latency\n\n")
	fmt.Fprintf(w, "%d rounds after one warm-up round; one cluster (its own Manager runtime, Aggregator, router.Balanced) watching %s; "+
		"backend: a MySQL greeting listener (test/mysqldouble) in this process, no status port; health-check interval %s. "+
		"Clocks start when the etcd Put/Delete of the ttl key is issued, so the figures include the etcd write.\n\n",
		r.Rounds, r.Etcd, r.HealthInterval)
	fmt.Fprintln(w, "| step | median | p90 | max | min |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	row := func(name string, s summary) {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", name, ms(s.Med), ms(s.P90), ms(s.Max), ms(s.Min))
	}
	row("register: ttl Put -> `Route` returns the backend", r.Routable)
	row("register: ttl Put -> first probe verdict (healthy) in the view", r.Probed)
	row("deregister: ttl Delete -> gone from the view, `Route` fails", r.Gone)
	row("(etcd Put of the ttl key, acknowledged)", r.PutRTT)
	row("(etcd Delete of the ttl key, acknowledged)", r.DeleteRTT)
	fmt.Fprintln(w)
	if r.OtherPct >= 0 {
		fmt.Fprintf(w, "Other processes used %.1f %% of the machine during the rounds (above ~10 %%: disturbed).\n\n", r.OtherPct)
	}
	fmt.Fprintln(w, "A newly registered backend is routable before its first probe completes: the prober reports it healthy "+
		"(\"not probed yet\") until the first probe, which starts as soon as the runtime sees it (observer.Health). "+
		"\"Routable\" is measured as `Route` returning that backend; the probe row shows when its first real verdict arrived.")
	fmt.Fprintln(w)
}

func (r *scaleResult) write(w io.Writer) {
	o := r.Opts
	n := o.Clusters * o.Backends
	fmt.Fprintf(w, "## Scale: idle cost of %d clusters x %d backends\n\n", o.Clusters, o.Backends)
	sqlProbe := "SQL greeting"
	if o.ProbeUser {
		sqlProbe = "SQL COM_PING on a kept connection (sql-user)"
	}
	status := sqlProbe + " only (status port 0: no /status probe, no /metrics scrape)"
	if o.Status {
		status = sqlProbe + " + TiDB-like status port (/status probed with each health check, /metrics scraped each metrics interval"
		if o.PadKB > 0 {
			status += fmt.Sprintf(", page padded to ~%d KiB", o.PadKB)
		}
		if o.MetricsGzip {
			status += ", served gzipped"
		}
		status += ")"
	}
	fmt.Fprintf(w, "Each cluster: its own runtime and etcd client, topology prefix `/topology/c<i>` on one shared etcd (%s). "+
		"%d distinct backends (test/mysqldouble, %s) served by a child process, so their CPU is not the proxy's. "+
		"Health-check interval %s, metrics interval %s, no Prometheus (so the metrics reader, which follows /topology/prometheus on the topology watch, scrapes each backend's status port). "+
		"Measured over %s after everything was healthy plus %s settling; GOMAXPROCS %d.\n\n",
		r.EtcdDesc, n, status, o.HealthInterval, o.MetricsInterval, r.Wall.Round(100*time.Millisecond), o.Settle, r.GOMAXPROCS)
	perCluster := func(v float64) float64 { return v / float64(o.Clusters) }
	fmt.Fprintln(w, "| measure | total | per cluster |")
	fmt.Fprintln(w, "|---|---:|---:|")
	fmt.Fprintf(w, "| Apply -> all %d backends probed healthy | %s | |\n", n, ms(r.Ready))
	cpuPct := pct(r.CPU, r.Wall)
	fmt.Fprintf(w, "| proxy CPU (getrusage self, user+sys) / wall | %.2f %% of one core | %.3f %% |\n", cpuPct, perCluster(cpuPct))
	fmt.Fprintf(w, "| proxy context switches / s (getrusage: its threads' sleeps and wake-ups) | %.0f | %.1f |\n", float64(r.Switches)/r.Wall.Seconds(), perCluster(float64(r.Switches)/r.Wall.Seconds()))
	if sql := r.Probes + r.Pings; sql > 0 {
		fmt.Fprintf(w, "| proxy CPU / SQL probe (all of its CPU, status checks and metrics included) | %.0f µs | |\n", float64(r.CPU.Microseconds())/float64(sql))
	}
	fmt.Fprintf(w, "| SQL connections / s (accepted by the backends: greeting probes, or kept-connection dials) | %.0f | %.1f |\n", float64(r.Probes)/r.Wall.Seconds(), perCluster(float64(r.Probes)/r.Wall.Seconds()))
	fmt.Fprintf(w, "| COM_PING / s on kept connections (answered by the backends) | %.0f | %.1f |\n", float64(r.Pings)/r.Wall.Seconds(), perCluster(float64(r.Pings)/r.Wall.Seconds()))
	if o.Status {
		fmt.Fprintf(w, "| HTTP requests / s (/status + /metrics) | %.0f | %.1f |\n", float64(r.HTTPRequests)/r.Wall.Seconds(), perCluster(float64(r.HTTPRequests)/r.Wall.Seconds()))
	}
	fmt.Fprintf(w, "| topology snapshots published / s | %.1f | %.2f |\n", float64(r.Publishes)/r.Wall.Seconds(), perCluster(float64(r.Publishes)/r.Wall.Seconds()))
	fmt.Fprintf(w, "| goroutines, sampled each second: min / median / max (%d before the runtimes; probes and scrapes add short-lived ones) | %.0f / %.0f / %.0f | %.1f (min) |\n",
		r.BaseGoroutine, r.Goroutines.Min(), r.Goroutines.Median(), r.Goroutines.Max(), perCluster(r.Goroutines.Min()-float64(r.BaseGoroutine)))
	fmt.Fprintf(w, "| heap in use (runtime HeapInuse, mean / max) | %s / %s | |\n", mib(uint64(r.HeapInuse.Mean())), mib(uint64(r.HeapInuse.Max())))
	fmt.Fprintf(w, "| live heap after GC (%s before the runtimes) | %s | %s |\n", mib(r.BaseLiveHeap), mib(r.LiveHeap), kib(perCluster(float64(r.LiveHeap)-float64(r.BaseLiveHeap))))
	fmt.Fprintf(w, "| VmRSS (mean; %s before the runtimes) | %s | %s |\n", mib(uint64(r.BaseRSS)), mib(uint64(r.RSS.Mean())), kib(perCluster(r.RSS.Mean()-float64(r.BaseRSS))))
	fmt.Fprintf(w, "| open fds at the end | %d | |\n", r.FDs)
	if r.EtcdSeparate {
		fmt.Fprintf(w, "| etcd process CPU / wall (serving %d watches + reads) | %.2f %% | |\n", o.Clusters, pct(r.EtcdCPU, r.Wall))
	}
	fmt.Fprintf(w, "| backend process CPU / wall (answering probes) | %.2f %% | |\n", pct(r.BackendCPU, r.Wall))
	fmt.Fprintf(w, "| backends not healthy at the end | %d | |\n", r.Unhealthy)
	if r.OtherPct >= 0 {
		fmt.Fprintf(w, "| other processes' CPU, %% of the whole machine (above ~10 %%: disturbed) | %.1f %% (steal %.1f %%) | |\n", r.OtherPct, r.StealPct)
	}
	fmt.Fprintln(w)
}
