// Command topology benchmarks Switchyard's topology path in-process: how fast
// a backend registered in etcd becomes routable (and a deregistered one stops
// being routable), and what many idle cluster runtimes cost. It drives the
// real backendcluster.Manager, observer.Aggregator and router.Balanced; etcd
// and the fake backends run beside it on loopback. bench/run.sh runs it as
// part of `make bench`; see bench/README.md.
//
//	go run ./bench/topology                      # both tests, full size
//	go run ./bench/topology -only latency -rounds 10
//	go run ./bench/topology -only scale -clusters 20 -idle 5s
//
// The Markdown report goes to stdout, progress to stderr.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/switchyard-db/switchyard/lib/config"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func main() {
	var (
		only      = flag.String("only", "all", "which test: latency, scale or all")
		rounds    = flag.Int("rounds", 50, "latency: register/deregister rounds")
		clusters  = flag.Int("clusters", 100, "scale: clusters")
		backends  = flag.Int("backends", 10, "scale: registered backends per cluster")
		idle      = flag.Duration("idle", 30*time.Second, "scale: measurement window")
		settle    = flag.Duration("settle", 6*time.Second, "scale: wait after everything is healthy, before measuring (at least one metrics interval)")
		health    = flag.Duration("health-interval", config.DefaultHealthInterval, "health-check interval")
		metrics   = flag.Duration("metrics-interval", config.DefaultMetricsInterval, "scale: metrics interval")
		etcdBin   = flag.String("etcd", "auto", "scale: etcd to use: auto (the etcd binary if installed, else embedded), embedded, or a binary's path")
		status    = flag.Bool("status", true, "scale: give each backend a TiDB-like HTTP status port (/status, /metrics)")
		probeUsr  = flag.Bool("probe-user", false, "scale: set [health-check] sql-user/sql-password (a kept connection per backend, COM_PING each interval) instead of a greeting per probe")
		padKB     = flag.Int("metrics-pad-kb", 0, "scale: pad each /metrics page to about this many KiB (a real TiDB page is far larger than the 4 metrics read)")
		metricsGz = flag.Bool("metrics-gzip", false, "scale: serve /metrics gzipped to a scraper that asks, as TiDB does (the proxy then decompresses each page)")
		cpuProf   = flag.String("cpuprofile", "", "scale: write a CPU profile of the measurement window to this file")
		traceOut  = flag.String("trace", "", "scale: write an execution trace (the scheduler's view: go tool trace) of the window's first 3 s to this file")
		quietW    = flag.Duration("quiet-wait", 0, "before each measurement, wait up to this long for other processes to use less than -quiet-pct of the machine")
		quietPct  = flag.Float64("quiet-pct", 10, "see -quiet-wait")
		serve     = flag.Int("serve-backends", 0, "internal: serve this many backends (the child process of the scale test)")
	)
	flag.Parse()
	if *serve > 0 {
		if err := serveBackends(*serve, *status, *padKB, *metricsGz); err != nil {
			fmt.Fprintln(os.Stderr, "topology backends:", err)
			os.Exit(1)
		}
		return
	}
	switch {
	case *only != "all" && *only != "latency" && *only != "scale":
		fail(fmt.Errorf("-only %q: want latency, scale or all", *only))
	case *rounds < 1 || *clusters < 1 || *backends < 1 || *idle <= 0:
		fail(fmt.Errorf("-rounds, -clusters, -backends and -idle must be positive"))
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	lg := logger()
	defer func() { _ = lg.Sync() }()

	var out strings.Builder
	header(&out)
	if *only != "scale" {
		fmt.Fprintf(os.Stderr, "topology: latency, %d rounds\n", *rounds)
		r, err := runLatency(ctx, lg, *rounds, *health, *quietW, *quietPct)
		if err != nil {
			fail(fmt.Errorf("latency: %w", err))
		}
		r.write(&out)
	}
	if *only != "latency" {
		r, err := runScale(ctx, lg, scaleOptions{
			Clusters: *clusters, Backends: *backends,
			Idle: *idle, Settle: *settle,
			HealthInterval: *health, MetricsInterval: *metrics,
			Etcd: *etcdBin, Status: *status, ProbeUser: *probeUsr, PadKB: *padKB, MetricsGzip: *metricsGz, CPUProfile: *cpuProf, Trace: *traceOut,
			QuietWait: *quietW, QuietPct: *quietPct,
		})
		if err != nil {
			fail(fmt.Errorf("scale: %w", err))
		}
		r.write(&out)
	}
	fmt.Print(out.String())
}

// logger shows the proxy's warnings (an etcd that stops answering, a build
// that fails) on stderr, and nothing below.
func logger() *zap.Logger {
	enc := zap.NewDevelopmentEncoderConfig()
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.Lock(os.Stderr), zapcore.WarnLevel)
	return zap.New(core)
}

func header(w io.Writer) {
	fmt.Fprintf(w, "# Switchyard topology benchmark (%s)\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if name, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
				break
			}
		}
	}
	fmt.Fprintf(w, "- %d CPUs x %s; %s; GOMAXPROCS %d\n", runtime.NumCPU(), model, runtime.Version(), runtime.GOMAXPROCS(0))
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if len(rev) > 7 {
			rev = rev[:7]
		}
		if rev != "" {
			if dirty {
				rev += " (with uncommitted changes)"
			}
			fmt.Fprintf(w, "- built at commit %s\n", rev)
		}
	}
	fmt.Fprintln(w)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "topology:", err)
	os.Exit(1)
}
