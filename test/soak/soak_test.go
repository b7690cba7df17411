//go:build soak

package soak

import (
	"bufio"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard/test/testenv"
)

// settings of one run, from the environment (make soak passes them on).
type settings struct {
	duration  time.Duration // SOAK_DURATION: the chaos phase, default 10m
	warmup    time.Duration // SOAK_WARMUP: load before the baseline, default 30s
	idle      int           // SOAK_IDLE: idle connections in all, default 1000
	rate      int           // SOAK_RATE: sysbench transactions/s per cluster, default 20
	reportDir string        // SOAK_REPORT_DIR: default <module>/bin/soak
}

func loadSettings(t *testing.T) settings {
	s := settings{duration: 10 * time.Minute, warmup: 30 * time.Second, idle: 1000, rate: 20}
	dur := func(env string, d *time.Duration) {
		if v := os.Getenv(env); v != "" {
			x, err := time.ParseDuration(v)
			if err != nil || x <= 0 {
				t.Fatalf("%s=%q: want a positive duration such as 2m", env, v)
			}
			*d = x
		}
	}
	num := func(env string, n *int) {
		if v := os.Getenv(env); v != "" {
			x, err := strconv.Atoi(v)
			if err != nil || x < 0 {
				t.Fatalf("%s=%q: want a whole number", env, v)
			}
			*n = x
		}
	}
	dur("SOAK_DURATION", &s.duration)
	dur("SOAK_WARMUP", &s.warmup)
	num("SOAK_IDLE", &s.idle)
	num("SOAK_RATE", &s.rate)
	if s.duration < 2*time.Minute {
		t.Fatalf("SOAK_DURATION=%v: the schedule needs at least 2m", s.duration)
	}
	s.reportDir = os.Getenv("SOAK_REPORT_DIR")
	if s.reportDir == "" {
		root, err := testenv.ModuleRoot()
		if err != nil {
			t.Fatal(err)
		}
		s.reportDir = filepath.Join(root, "bin", "soak")
	}
	return s
}

// event is one scheduled fault, at an offset from the start of the chaos.
type event struct {
	at   time.Duration
	kind string
}

// schedule: a backend kill every cycle (60 s; a quarter of a shorter run),
// half-way through the cycle; etcd restarted at the start of the cycle a
// third of the way in, the proxy at two thirds.
func schedule(d time.Duration) (cycle time.Duration, evs []event) {
	cycle = time.Minute
	if d < 5*time.Minute {
		cycle = d / 4
	}
	n := int(d / cycle)
	for k := range n {
		at := time.Duration(k)*cycle + cycle/2
		if at+30*time.Second < d {
			evs = append(evs, event{at, FaultBackendKill})
		}
	}
	evs = append(evs,
		event{time.Duration(max(1, n/3)) * cycle, FaultEtcdRestart},
		event{time.Duration(max(2, 2*n/3)) * cycle, FaultProxyRestart})
	sort.Slice(evs, func(i, j int) bool { return evs[i].at < evs[j].at })
	return cycle, evs
}

func TestSoak(t *testing.T) {
	set := loadSettings(t)
	rep := &Report{Started: time.Now(), Settings: map[string]string{
		"duration": set.duration.String(), "warmup": set.warmup.String(), "idle_connections": strconv.Itoa(set.idle),
		"sysbench":        fmt.Sprintf("oltp_read_write %d threads, --rate=%d per cluster, %d tables x %d rows", sbThreads, set.rate, sbTables, sbTableSize),
		"counter_clients": fmt.Sprintf("4 (cluster x proxy), %d workers each, %v pause", counterWorkers, counterPause),
	}, Machine: machine()}
	rep.Policy = Policy{FaultedCluster: clusterD, RestartedProxy: "p2", Before: 2 * time.Second, After: 15 * time.Second, MaxStall: 20 * time.Second}
	work := t.TempDir()

	// Backends: two per cluster.
	var backends [4]*testenv.MariaDB
	for i := range backends {
		backends[i] = testenv.StartMariaDB(t, testenv.MariaDBOptions{MaxConnections: 2000})
	}
	disc, static := backends[:2], backends[2:]
	for _, m := range backends {
		db := m.RootDB(t)
		for _, s := range schema {
			if _, err := db.Exec(s); err != nil {
				t.Fatalf("schema on %s: %v", m.Addr(), err)
			}
		}
		if err := sysbenchPrepare(work, m); err != nil {
			t.Fatal(err)
		}
	}
	script := filepath.Join(work, "soak_oltp_rw.lua")
	if err := os.WriteFile(script, []byte(ErrorHookLua), 0o644); err != nil {
		t.Fatal(err)
	}

	etcd := startEtcd(t)
	regs := map[*testenv.MariaDB]*registration{}
	statusPorts := map[*testenv.MariaDB]uint{}
	for _, m := range disc {
		statusPorts[m] = startStatusPort(t, m.Addr())
		regs[m] = register(etcd.Client, m.Addr(), statusPorts[m])
	}
	t.Cleanup(func() {
		for _, r := range regs {
			r.stop()
		}
	})
	staticAddrs := []string{static[0].Addr(), static[1].Addr()}

	bin := testenv.BuildProxy(t)
	var nodes []*proxyNode
	var variantMu sync.Mutex
	cur := variant(0)
	for _, name := range []string{"p1", "p2"} {
		n := &proxyNode{name: name, sqlAddr: testenv.FreeAddr(t), staticAddr: testenv.FreeAddr(t), apiAddr: testenv.FreeAddr(t)}
		n.proc = testenv.StartProxy(t, bin, proxyConfig(n, etcd.ClientAddr, staticAddrs, cur))
		nodes = append(nodes, n)
	}
	p1, p2 := nodes[0], nodes[1]
	addrOf := func(n *proxyNode, cluster string) string {
		if cluster == clusterS {
			return n.staticAddr
		}
		return n.sqlAddr
	}
	for _, n := range nodes {
		for _, c := range []string{clusterD, clusterS} {
			waitBothBackends(t, addrOf(n, c), 90*time.Second)
		}
	}

	// Idle connections, a quarter per proxy and cluster.
	var pools []*idlePool
	for _, n := range nodes {
		for _, c := range []string{clusterD, clusterS} {
			p, err := openIdle(c, n.name, addrOf(n, c), set.idle/4)
			if err != nil {
				t.Fatalf("idle connections: %v (scale down with SOAK_IDLE)", err)
			}
			pools = append(pools, p)
		}
	}
	t.Cleanup(func() {
		for _, p := range pools {
			p.close()
		}
	})

	var counters []*counterClient
	for _, n := range nodes {
		for _, c := range []string{clusterD, clusterS} {
			cc, err := newCounter(len(counters)+1, c, n.name, addrOf(n, c))
			if err != nil {
				t.Fatal(err)
			}
			counters = append(counters, cc)
		}
	}
	t.Cleanup(func() {
		for _, c := range counters {
			_ = c.db.Close()
		}
	})

	// startLoad starts the load of the warm-up and of the chaos: the
	// counting clients, and a sysbench per cluster through p1 for d. Closing
	// stop and waiting for wg ends the counting clients.
	startLoad := func(d time.Duration) (chan struct{}, *sync.WaitGroup, []*sysbenchProc) {
		stop := make(chan struct{})
		wg := &sync.WaitGroup{}
		for _, c := range counters {
			c.run(stop, wg)
		}
		var sbs []*sysbenchProc
		for _, c := range []string{clusterD, clusterS} {
			sb, err := startSysbench(work, script, c, "p1", addrOf(p1, c), d, set.rate)
			if err != nil {
				t.Fatal(err)
			}
			sbs = append(sbs, sb)
		}
		return stop, wg, sbs
	}

	// Warm-up: the same load without faults, then the baseline with the
	// idle connections open and no load.
	t.Logf("warm-up %v", set.warmup)
	var warm []Stream
	{
		stop, wg, sbs := startLoad(set.warmup)
		time.Sleep(set.warmup)
		close(stop)
		wg.Wait()
		for _, sb := range sbs {
			if err := sb.wait(time.Minute); err != nil {
				t.Errorf("warm-up %s: %v", sb.name, err)
			}
			st, _, err := sb.stream()
			if err != nil {
				t.Errorf("warm-up %s: %v", sb.name, err)
			}
			warm = append(warm, st)
		}
		for _, c := range counters {
			warm = append(warm, c.stream())
			c.reset()
		}
	}
	rep.Warmup = Policy{MaxStall: rep.Policy.MaxStall}.Judge(warm, nil)
	baseline := map[string]Resources{}
	for _, n := range nodes {
		r, err := settledResources(n)
		if err != nil {
			t.Fatalf("baseline of %s: %v", n.name, err)
		}
		baseline[n.name] = r
		if err := saveHeap(n, set.reportDir, "baseline"); err != nil {
			t.Logf("no heap profile: %v", err)
		}
	}
	t.Logf("baseline: %+v", baseline)

	// Chaos.
	t0 := time.Now()
	t.Logf("chaos for %v from %s", set.duration, t0.Format(timeFmt))
	stop, wg, sbs := startLoad(set.duration)

	var bgWG sync.WaitGroup
	bgStop := make(chan struct{})
	var repMu sync.Mutex
	var p2Down sync.Mutex // held while p2 restarts: no reload is sent to it then
	bgWG.Add(2)
	go func() { // a reload every 10 s
		defer bgWG.Done()
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-bgStop:
				return
			case <-tick.C:
			}
			variantMu.Lock()
			cur++
			v := cur
			variantMu.Unlock()
			for _, n := range nodes {
				if n == p2 {
					p2Down.Lock()
				}
				err := n.reload(proxyConfig(n, etcd.ClientAddr, staticAddrs, v))
				if n == p2 {
					p2Down.Unlock()
				}
				repMu.Lock()
				if err != nil {
					rep.ReloadErrors = append(rep.ReloadErrors, fmt.Sprintf("reload %d of %s: %v", v, n.name, err))
				}
				repMu.Unlock()
			}
			repMu.Lock()
			rep.Reloads++
			repMu.Unlock()
		}
	}()
	go func() { // the machine's load, every 30 s
		defer bgWG.Done()
		tick := time.NewTicker(30 * time.Second)
		defer tick.Stop()
		for {
			if la, err := os.ReadFile("/proc/loadavg"); err == nil {
				f := strings.Fields(string(la))
				repMu.Lock()
				rep.LoadAvg = append(rep.LoadAvg, strings.Join(f[:3], "/"))
				repMu.Unlock()
			}
			select {
			case <-bgStop:
				return
			case <-tick.C:
			}
		}
	}()

	_, evs := schedule(set.duration)
	kills := 0
	for _, ev := range evs {
		time.Sleep(time.Until(t0.Add(ev.at)))
		f := Fault{Kind: ev.kind, Start: time.Now()}
		switch ev.kind {
		case FaultBackendKill:
			m := disc[kills%2]
			kills++
			f.Target, f.Cluster = m.Addr(), clusterD
			t.Logf("%s SIGKILL backend %s", f.Start.Format(timeFmt), m.Addr())
			m.Kill()
			regs[m].stop()
			time.Sleep(8 * time.Second) // past the registration's TTL: etcd drops it, as it drops a dead TiDB
			if err := m.Restart(); err != nil {
				f.Err = err.Error()
			} else {
				regs[m] = register(etcd.Client, m.Addr(), statusPorts[m])
			}
		case FaultEtcdRestart:
			f.Target = "etcd"
			t.Logf("%s SIGKILL etcd", f.Start.Format(timeFmt))
			if err := restartEtcd(etcd, 3*time.Second); err != nil {
				f.Err = err.Error()
			}
		case FaultProxyRestart:
			f.Target = p2.name
			t.Logf("%s SIGTERM proxy p2", f.Start.Format(timeFmt))
			p2Down.Lock()
			old := p2.current()
			if err := old.Signal(syscall.SIGTERM); err != nil {
				f.Err = err.Error()
			}
			select {
			case <-old.Exited():
				if err := old.Wait(); err != nil {
					f.Err = fmt.Sprintf("exit after SIGTERM: %v", err)
				}
			case <-time.After(60 * time.Second):
				old.Kill()
				f.Err = "no exit within 60 s of SIGTERM"
			}
			variantMu.Lock()
			v := cur
			variantMu.Unlock()
			np := testenv.StartProxy(t, bin, proxyConfig(p2, etcd.ClientAddr, staticAddrs, v))
			p2.mu.Lock()
			p2.proc = np
			p2.mu.Unlock()
			p2Down.Unlock()
			f.End = time.Now()
			// The pool's connections through p2 broke; it opens new ones.
			for _, p := range pools {
				if p.prox == p2.name {
					if err := p.reopen(); err != nil {
						t.Errorf("reopen idle connections through the restarted p2: %v", err)
					}
				}
			}
		}
		if f.End.IsZero() {
			f.End = time.Now()
		}
		t.Logf("%s %s of %s done (%v)", f.End.Format(timeFmt), f.Kind, f.Target, f.End.Sub(f.Start).Round(100*time.Millisecond))
		rep.Faults = append(rep.Faults, f)
	}
	time.Sleep(time.Until(t0.Add(set.duration)))
	close(stop)
	wg.Wait()
	var streams []Stream
	for _, sb := range sbs {
		if err := sb.wait(2 * time.Minute); err != nil {
			rep.Violations = append(rep.Violations, fmt.Sprintf("%s ended badly: %v (its output: %s)", sb.name, err, filepath.Base(sb.logPath)))
		}
		st, _, err := sb.stream()
		if err != nil {
			t.Errorf("%s: %v", sb.name, err)
		}
		if st.Ops < 0 {
			rep.Violations = append(rep.Violations, fmt.Sprintf("%s printed no summary (%s)", sb.name, filepath.Base(sb.logPath)))
		}
		streams = append(streams, st)
		if data, err := os.ReadFile(sb.logPath); err == nil {
			_ = os.MkdirAll(set.reportDir, 0o755)
			_ = os.WriteFile(filepath.Join(set.reportDir, filepath.Base(sb.logPath)), data, 0o644)
		}
	}
	for _, c := range counters {
		streams = append(streams, c.stream())
	}
	close(bgStop)
	bgWG.Wait()
	t.Logf("load stopped at %s", time.Now().Format(timeFmt))

	// Resources: the load has stopped; give the proxies up to a minute to
	// let go of what it used.
	for _, n := range nodes {
		rc := ResourceCheck{Proxy: n.name, Baseline: baseline[n.name]}
		if n == p2 {
			rc.Note = "restarted during the soak: the baseline is its first process's, the final figures its second's"
		}
		deadline := time.Now().Add(time.Minute)
		for {
			r, err := settledResources(n)
			if err != nil {
				rc.Over = []string{err.Error()}
				break
			}
			rc.Series = append(rc.Series, r)
			rc.Final = r
			if rc.Over = Exceeds(rc.Baseline, r, 0.10); len(rc.Over) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Second)
		}
		rep.Resources = append(rep.Resources, rc)
		if err := saveHeap(n, set.reportDir, "final"); err != nil {
			t.Logf("no heap profile: %v", err)
		}
	}

	for _, p := range pools {
		r := p.check()
		rep.Idle = append(rep.Idle, r)
		// Every idle session survives: the untouched ones trivially, those
		// on a killed backend by failing over (migration is configured), and
		// those through the restarted proxy were opened again after it.
		if r.Alive != r.Opened || r.Opened != p.n {
			rep.Violations = append(rep.Violations, fmt.Sprintf("%s: %d of %d idle connections alive at the end (first error: %s)", r.Name, r.Alive, p.n, r.First))
		}
	}

	// The ledger, read from every backend directly (socket, not the proxy).
	for _, c := range counters {
		group := static
		if c.cluster == clusterD {
			group = disc
		}
		found := map[int]int{}
		var sum int64
		for _, m := range group {
			db := m.RootDB(t)
			n, err := ledgerRows(db, c.id, found)
			if err != nil {
				t.Fatalf("ledger on %s: %v", m.Addr(), err)
			}
			sum += n
		}
		c.mu.Lock()
		rep.Ledger = append(rep.Ledger, CheckLedger(c.name, c.outcomes, found, sum))
		c.mu.Unlock()
	}

	// Reloads: none refused, and p1 applied every one.
	for _, n := range nodes {
		ok, bad, err := reloadCounts(n)
		if err != nil {
			rep.ReloadErrors = append(rep.ReloadErrors, fmt.Sprintf("%s: metrics: %v", n.name, err))
			continue
		}
		if bad != 0 {
			rep.ReloadErrors = append(rep.ReloadErrors, fmt.Sprintf("%s: %v reloads failed", n.name, bad))
		}
		if n == p1 && ok < float64(rep.Reloads) {
			rep.ReloadErrors = append(rep.ReloadErrors, fmt.Sprintf("p1 applied %v reloads, the soak made %d", ok, rep.Reloads))
		}
	}
	for _, n := range nodes {
		select {
		case <-n.current().Exited():
			rep.Violations = append(rep.Violations, n.name+" exited during the soak")
		default:
		}
	}

	rep.Streams = rep.Policy.Judge(streams, rep.Faults)
	rep.Ended = time.Now()
	rep.Finish()
	if err := rep.Write(set.reportDir); err != nil {
		t.Errorf("write report: %v", err)
	}
	t.Logf("report in %s:\n%s", set.reportDir, rep.Text())
	if !rep.Pass {
		t.Errorf("the soak broke %d invariants (see the report above)", len(rep.Violations))
	}
}

// waitBothBackends waits until fresh connections to addr reach two
// different backends.
func waitBothBackends(t *testing.T, addr string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	cfg := testenv.MySQLConfig(addr, testenv.NativeUser, testenv.NativePassword)
	var last error
	for time.Now().Before(deadline) {
		ports := map[int]bool{}
		for range 8 {
			db := testenv.OpenDB(t, cfg)
			var port int
			if err := db.QueryRow("SELECT @@port").Scan(&port); err != nil {
				last = err
			} else {
				ports[port] = true
			}
			_ = db.Close()
		}
		if len(ports) >= 2 {
			return
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("connections to %s did not reach both backends within %v (last error: %v)", addr, d, last)
}

// settledResources forces two garbage collections in the proxy (its heap
// profile endpoint with gc=1; two, so that sync.Pool's victim cache goes
// too), gives the runtime a few seconds to return free pages to the OS, and
// then reads the figures. Baseline and final figures are both taken this
// way: what is compared is what the proxy still holds, not where its GC
// cycle happened to be.
func settledResources(n *proxyNode) (Resources, error) {
	for range 2 {
		if err := getHeap(n, true, io.Discard); err != nil {
			return Resources{}, err
		}
	}
	time.Sleep(5 * time.Second)
	return resources(n)
}

func resources(n *proxyNode) (Resources, error) {
	r := Resources{At: time.Now()}
	pid := n.current().Pid()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return r, err
	}
	r.FDs = len(ents)
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return r, err
	}
	for _, line := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				r.RSSKiB, _ = strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	g, err := metric(n, "go_goroutines")
	if err != nil {
		return r, err
	}
	r.Goroutines = int(g)
	if h, err := metric(n, "go_memstats_heap_inuse_bytes"); err == nil {
		r.HeapInuseKiB = int64(h) / 1024
	}
	return r, nil
}

// saveHeap keeps the proxy's heap profile (GET /debug/pprof/heap, read
// token) beside the report, for `go tool pprof -diff_base`.
func saveHeap(n *proxyNode, dir, label string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("heap-%s-%s.pb.gz", n.name, label)))
	if err != nil {
		return err
	}
	defer f.Close()
	return getHeap(n, false, f)
}

// getHeap fetches GET /debug/pprof/heap (read token) into w; gc runs a
// garbage collection first.
func getHeap(n *proxyNode, gc bool, w io.Writer) error {
	url := "http://" + n.apiAddr + "/debug/pprof/heap"
	if gc {
		url += "?gc=1"
	}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+readToken)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("heap profile of %s: %s", n.name, resp.Status)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

// metric reads one sample of /metrics (public); name may carry labels as
// they are printed, e.g. switchyard_config_reloads_total{result="ok"}.
func metric(n *proxyNode, name string) (float64, error) {
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + n.apiAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	if err := sc.Err(); err != nil && err != io.EOF {
		return 0, err
	}
	return 0, fmt.Errorf("no %s in /metrics", name)
}

func reloadCounts(n *proxyNode) (ok, bad float64, err error) {
	if ok, err = metric(n, `switchyard_config_reloads_total{result="ok"}`); err != nil {
		return 0, 0, err
	}
	bad, err = metric(n, `switchyard_config_reloads_total{result="error"}`)
	if err != nil {
		bad, err = 0, nil // never failed: the series does not exist
	}
	return ok, bad, err
}

// ledgerRows adds the client's ledger rows on one backend to found and
// returns its counter.
func ledgerRows(db *sql.DB, client int, found map[int]int) (int64, error) {
	rows, err := db.Query("SELECT seq FROM soak_ledger WHERE client = ?", client)
	if err != nil {
		return 0, err
	}
	for rows.Next() {
		var seq int
		if err := rows.Scan(&seq); err != nil {
			rows.Close()
			return 0, err
		}
		found[seq]++
	}
	if err := rows.Close(); err != nil {
		return 0, err
	}
	var n sql.NullInt64
	if err := db.QueryRow("SELECT n FROM soak_counter WHERE client = ?", client).Scan(&n); err != nil && err != sql.ErrNoRows {
		return 0, err
	}
	return n.Int64, nil
}

func machine() map[string]string {
	m := map[string]string{"cpus": strconv.Itoa(runtime.NumCPU()), "go": runtime.Version()}
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		m["commit"] = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("uname", "-r").Output(); err == nil {
		m["kernel"] = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("mariadbd", "--version").Output(); err == nil {
		m["mariadb"] = strings.TrimSpace(string(out))
	} else if out, err := exec.Command("/usr/sbin/mariadbd", "--version").Output(); err == nil {
		m["mariadb"] = strings.TrimSpace(string(out))
	}
	return m
}
