package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/switchyard-db/switchyard/bench/internal/benchstat"
	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/health"
	"github.com/switchyard-db/switchyard/pkg/manager/backendcluster"
	"github.com/switchyard-db/switchyard/pkg/observer"
	"github.com/switchyard-db/switchyard/pkg/router"
	"github.com/switchyard-db/switchyard/test/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// scaleOptions sizes the idle-cost test.
type scaleOptions struct {
	Clusters, Backends int
	Idle, Settle       time.Duration
	HealthInterval     time.Duration
	MetricsInterval    time.Duration
	Etcd               string // auto, embedded, or the path of an etcd binary
	Status             bool   // backends have TiDB status ports
	ProbeUser          bool   // probe with [health-check] sql-user: kept connections and COM_PING
	PadKB              int    // extra KiB per /metrics page
	MetricsGzip        bool   // /metrics gzipped to a scraper that asks
	CPUProfile         string // write a CPU profile of the idle window here
	Trace              string // write an execution trace of the window's first seconds here
	QuietWait          time.Duration
	QuietPct           float64
}

// scaleResult is what one idle window measured.
type scaleResult struct {
	Opts          scaleOptions
	EtcdDesc      string
	EtcdSeparate  bool
	Ready         time.Duration // Apply -> every backend probed healthy and routable
	Wall          time.Duration
	CPU           time.Duration // this process
	Switches      int64         // this process's context switches (its threads' sleeps and wake-ups)
	EtcdCPU       time.Duration // the etcd process (0 when embedded)
	BackendCPU    time.Duration // the backend process
	OtherPct      float64       // other processes' CPU, % of the whole machine; -1 unknown
	StealPct      float64
	Probes        int64 // SQL connections the backends accepted
	Pings         int64 // COM_PINGs the backends answered
	HTTPRequests  int64
	Publishes     uint64 // Aggregator Topology versions
	BaseGoroutine int
	Goroutines    sampleStats
	HeapInuse     sampleStats // bytes
	BaseLiveHeap  uint64
	LiveHeap      uint64 // after a GC at the end of the window
	BaseRSS       int64
	RSS           sampleStats
	FDs           int
	Unhealthy     int // backends not healthy at the end of the window
	GOMAXPROCS    int
}

// sampleStats summarizes values sampled once a second.
type sampleStats struct{ v []float64 }

func (s *sampleStats) add(v float64) { s.v = append(s.v, v) }

func (s *sampleStats) Mean() float64 {
	sum := 0.0
	for _, v := range s.v {
		sum += v
	}
	return sum / float64(max(len(s.v), 1))
}

func (s *sampleStats) Min() float64 { return s.pick(0) }
func (s *sampleStats) Max() float64 { return s.pick(1) }

// Median is the lower median.
func (s *sampleStats) Median() float64 { return s.pick(0.5) }

func (s *sampleStats) pick(q float64) float64 {
	if len(s.v) == 0 {
		return 0
	}
	sorted := slices.Clone(s.v)
	slices.Sort(sorted)
	return sorted[int(q*float64(len(sorted)-1))]
}

// startScaleEtcd picks the etcd for the scale test: a separate process when
// a binary is available, so that its CPU is not counted as the proxy's.
func startScaleEtcd(choice string) (*etcdServer, error) {
	switch choice {
	case "embedded":
		return startEmbeddedEtcd()
	case "auto":
		path, err := exec.LookPath("etcd")
		if err != nil {
			if _, serr := os.Stat("/usr/bin/etcd"); serr != nil {
				fmt.Fprintln(os.Stderr, "topology: no etcd binary found (apt-get install etcd-server); using an embedded etcd, whose CPU counts as the proxy's")
				return startEmbeddedEtcd()
			}
			path = "/usr/bin/etcd"
		}
		return startEtcdProcess(path)
	default:
		return startEtcdProcess(choice)
	}
}

// runScale runs Clusters runtimes of Backends registered backends each, waits
// until all are healthy, and measures what the proxy's process spends while
// nothing changes.
func runScale(ctx context.Context, lg *zap.Logger, o scaleOptions) (*scaleResult, error) {
	etcd, err := startScaleEtcd(o.Etcd)
	if err != nil {
		return nil, err
	}
	defer etcd.Stop()
	res := &scaleResult{Opts: o, EtcdDesc: etcd.Version, EtcdSeparate: etcd.Pid != 0, GOMAXPROCS: runtime.GOMAXPROCS(0)}
	if res.EtcdSeparate {
		res.EtcdDesc += fmt.Sprintf(" (separate process, pid %d)", etcd.Pid)
	} else {
		res.EtcdDesc += " (in this process: its CPU is included in the proxy figures)"
	}

	fmt.Fprintf(os.Stderr, "topology: starting %d backends in a child process\n", o.Clusters*o.Backends)
	bp, err := startBackendProc(o.Clusters*o.Backends, o.Status, o.PadKB, o.MetricsGzip)
	if err != nil {
		return nil, err
	}
	defer bp.Stop()
	if err := register(ctx, etcd.Endpoint, o, bp.Backends); err != nil {
		return nil, err
	}

	// The baseline is everything but the cluster runtimes.
	runtime.GC()
	res.BaseGoroutine = runtime.NumGoroutine()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.BaseLiveHeap = ms.HeapAlloc
	res.BaseRSS, _ = benchstat.ProcRSS(os.Getpid())

	cfg := config.NewDefault()
	cfg.HealthCheck.Interval = config.NewDuration(o.HealthInterval)
	cfg.Balance.MetricsInterval = config.NewDuration(o.MetricsInterval)
	cfg.Proxy.UserPrefixRouting = true
	if o.ProbeUser {
		cfg.HealthCheck.SQLUser, cfg.HealthCheck.SQLPassword = benchProbeUser, benchProbePassword
	}
	for i := range o.Clusters {
		cfg.Clusters = append(cfg.Clusters, config.Cluster{
			Name:           clusterName(i),
			EtcdEndpoints:  []string{etcd.Endpoint},
			TopologyPrefix: clusterPrefix(i),
		})
	}
	cfg.Proxy.DefaultCluster = clusterName(0)
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	agg := observer.NewAggregator()
	wake, unsubscribe := agg.Subscribe()
	defer unsubscribe()
	mgr := backendcluster.NewManager(lg, agg)
	defer mgr.Close()
	fmt.Fprintf(os.Stderr, "topology: applying %d clusters\n", o.Clusters)
	tApply := time.Now()
	if r := mgr.Apply(cfg); len(r.Failed) > 0 {
		return nil, fmt.Errorf("apply: %v", r.Failed)
	}
	rt := router.NewBalanced(agg, cfg)
	allHealthy := func() bool {
		topo := agg.Topology()
		for i := range o.Clusters {
			v := topo.Cluster(clusterName(i))
			if v == nil || v.State != observer.StateReady || len(v.Backends) != o.Backends {
				return false
			}
			for _, b := range v.Backends {
				if !b.Health.Healthy || b.Health.Reason == health.ErrNotProbed.Error() {
					return false
				}
			}
		}
		return true
	}
	if err := waitFor(ctx, wake, 2*time.Minute, "every backend probed healthy", allHealthy); err != nil {
		return nil, err
	}
	res.Ready = time.Since(tApply)
	for i := range o.Clusters {
		l, err := rt.Route(router.ClientInfo{User: clusterName(i) + ".app"}, nil)
		if err != nil {
			return nil, fmt.Errorf("route to %s: %w", clusterName(i), err)
		}
		l.Release()
	}
	fmt.Fprintf(os.Stderr, "topology: ready after %s; settling %s, then measuring %s\n", res.Ready.Round(time.Millisecond), o.Settle, o.Idle)
	if err := sleepCtx(ctx, o.Settle); err != nil {
		return nil, err
	}

	if o.QuietWait > 0 {
		fmt.Fprintf(os.Stderr, "topology: waiting up to %s for other processes to use < %.0f %% of the machine\n", o.QuietWait, o.QuietPct)
		waitQuiet(ctx, o.QuietWait, o.QuietPct, etcd.Pid, bp.Pid)
	}
	conns0, reqs0, pings0, err := bp.Stats()
	if err != nil {
		return nil, err
	}
	etcd0, _ := procCPU(etcd.Pid)
	be0, _ := procCPU(bp.Pid)
	ver0 := agg.Topology().Version
	if o.CPUProfile != "" {
		stopProfile, err := startCPUProfile(o.CPUProfile)
		if err != nil {
			return nil, err
		}
		defer stopProfile()
	}
	if o.Trace != "" {
		stopTrace, err := startTrace(o.Trace, 3*time.Second)
		if err != nil {
			return nil, err
		}
		defer stopTrace()
	}
	busy0, steal0, total0, statOK := machineCPU()
	cpu0, sw0 := selfUsage()
	t0 := time.Now()
	tick := time.NewTicker(time.Second)
	for time.Since(t0) < o.Idle {
		select {
		case <-ctx.Done():
			tick.Stop()
			return nil, ctx.Err()
		case <-tick.C:
		}
		res.Goroutines.add(float64(runtime.NumGoroutine()))
		runtime.ReadMemStats(&ms)
		res.HeapInuse.add(float64(ms.HeapInuse))
		if rss, err := benchstat.ProcRSS(os.Getpid()); err == nil {
			res.RSS.add(float64(rss))
		}
	}
	tick.Stop()
	cpu1, sw1 := selfUsage()
	res.CPU, res.Switches, res.Wall = cpu1-cpu0, sw1-sw0, time.Since(t0)
	busy1, steal1, total1, statOK1 := machineCPU()
	if etcd.Pid != 0 {
		etcd1, _ := procCPU(etcd.Pid)
		res.EtcdCPU = etcd1 - etcd0
	}
	be1, _ := procCPU(bp.Pid)
	res.BackendCPU = be1 - be0
	res.OtherPct = -1
	if statOK && statOK1 && total1 > total0 {
		other := (busy1 - busy0) - res.CPU - res.EtcdCPU - res.BackendCPU
		res.OtherPct = max(0, pct(other, total1-total0))
		res.StealPct = pct(steal1-steal0, total1-total0)
	}
	res.Publishes = agg.Topology().Version - ver0
	conns1, reqs1, pings1, err := bp.Stats()
	if err != nil {
		return nil, err
	}
	res.Probes, res.HTTPRequests, res.Pings = conns1-conns0, reqs1-reqs0, pings1-pings0
	res.FDs = openFDs()
	for _, v := range agg.Topology().Clusters {
		for _, b := range v.Backends {
			if !b.Health.Healthy {
				res.Unhealthy++
			}
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	res.LiveHeap = ms.HeapAlloc
	return res, nil
}

// startTrace traces this process for d, or until the returned func is
// called.
func startTrace(path string, d time.Duration) (func(), error) {
	stop, err := startRecording(path, trace.Start, trace.Stop)
	if err != nil {
		return nil, err
	}
	var once sync.Once
	t := time.AfterFunc(d, func() { once.Do(stop) })
	return func() { t.Stop(); once.Do(stop) }, nil
}

// startCPUProfile profiles this process until the returned func is called.
func startCPUProfile(path string) (func(), error) {
	return startRecording(path, pprof.StartCPUProfile, pprof.StopCPUProfile)
}

// startRecording creates path and starts a recorder writing to it; the
// returned func stops the recorder and closes the file.
func startRecording(path string, start func(io.Writer) error, stop func()) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := start(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() {
		stop()
		_ = f.Close()
	}, nil
}

func clusterName(i int) string   { return "c" + strconv.Itoa(i) }
func clusterPrefix(i int) string { return "/topology/c" + strconv.Itoa(i) }

// register writes each backend's info and ttl under its cluster's prefix,
// one transaction per cluster, all ttl keys under one long lease (nothing
// expires during the run, so no keep-alive traffic either).
func register(ctx context.Context, endpoint string, o scaleOptions, bes []backend) error {
	cli, err := newEtcdClient(endpoint)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	lease, err := cli.Grant(ctx, 3600)
	if err != nil {
		return fmt.Errorf("grant: %w", err)
	}
	now := strconv.FormatInt(time.Now().UnixNano(), 10)
	for i := range o.Clusters {
		var ops []clientv3.Op
		for _, b := range bes[i*o.Backends : (i+1)*o.Backends] {
			key := clusterPrefix(i) + "/" + b.Addr
			ops = append(ops,
				clientv3.OpPut(key+"/info", etcdtest.InfoJSON("8.0.11-TiDB-v8.5.0", b.StatusPort, "")),
				clientv3.OpPut(key+"/ttl", now, clientv3.WithLease(lease.ID)))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("register cluster %s: %w", clusterName(i), err)
		}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func pct(part, whole time.Duration) float64 {
	if whole <= 0 {
		return 0
	}
	return 100 * float64(part) / float64(whole)
}
