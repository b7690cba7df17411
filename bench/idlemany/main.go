// Command idlemany holds a very large number of idle authenticated sessions in one
// Switchyard process (issue 11's P4: 100,000), and reports the proxy's resident memory,
// goroutines and file descriptors at checkpoints on the way.
//
// Everything but the proxy runs in this process: a few mysqldouble servers as the
// cluster's backends (a MariaDB would need ~55 KiB and a thread per connection; the
// double serves each one with a goroutine), and the clients, which log in with
// go-sql-driver from several loopback source addresses (127.0.0.2, .3, ...) so that
// 100,000 connections to one proxy port do not run out of source ports. The proxy
// reaches its backends from 127.0.0.1, so the cluster has enough backends for each to
// take fewer connections than the kernel's ephemeral port range.
//
// The file descriptor limit is raised for this process and, by inheritance, for the
// proxy (as root up to fs.nr_open). At the end every session answers a COM_PING (the
// sessions were held, not just counted), then all are closed and the proxy stopped.
//
//	go run ./bench/idlemany -proxy bin/proxy -n 100000 -checkpoints 20000,100000
package main

import (
	"bufio"
	"context"
	"database/sql/driver"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/switchyard-db/switchyard/bench/internal/benchstat"
	"github.com/switchyard-db/switchyard/test/mysqldouble"
	"github.com/switchyard-db/switchyard/test/testenv"
)

const (
	benchUser = "bench"
	benchPass = "bench-pw"
	// readToken lets the bench fetch the proxy's heap profile; the API listens on
	// loopback for the run only.
	readToken = "idlemany-read-token-0123456789abcdef"
)

func main() {
	proxyBin := flag.String("proxy", "bin/proxy", "the Switchyard binary")
	n := flag.Int("n", 100000, "idle sessions to open")
	checkpoints := flag.String("checkpoints", "20000", "also report at these session counts (comma-separated)")
	backends := flag.Int("backends", 0, "mysqldouble backends (0: one per 5,000 sessions)")
	sources := flag.Int("sources", 0, "loopback source addresses for the clients (0: one per 5,000 sessions)")
	parallel := flag.Int("parallel", 32, "concurrent logins")
	workDir := flag.String("dir", "", "directory for the proxy's config and log (default: a temporary one)")
	hold := flag.Duration("hold", 30*time.Second, "after the last checkpoint, hold the sessions this long and report again (the garbage collector and scavenger settle)")
	cpuProfile := flag.String("cpuprofile", "", "write the proxy's CPU profile of the hold period to this file")
	eventLoops := flag.String("event-loops", "", `the proxy's [proxy] event-loops ("auto", a number, 0 for a goroutine per session; default: the proxy's default)`)
	heapProfile := flag.String("heapprofile", "", "write the proxy's heap profile (after a GC) with all sessions open to this file")
	flag.Parse()
	if err := run(*proxyBin, *n, *checkpoints, *backends, *sources, *parallel, *workDir, *heapProfile, *cpuProfile, *eventLoops, *hold); err != nil {
		fmt.Fprintln(os.Stderr, "idlemany:", err)
		os.Exit(1)
	}
}

func run(proxyBin string, n int, checkpointList string, nBackends, nSources, parallel int, dir, heapProfile, cpuProfile, eventLoops string, hold time.Duration) error {
	marks, err := parseCheckpoints(checkpointList, n)
	if err != nil {
		return err
	}
	if nBackends == 0 {
		nBackends = (n + 4999) / 5000
	}
	if nSources == 0 {
		nSources = (n + 4999) / 5000
	}
	if nSources > 250 {
		return errors.New("-sources: at most 250 (127.0.0.2 to 127.0.0.251)")
	}
	// The proxy needs two descriptors per session (client and backend), and so does
	// this process (the clients and the doubles' ends).
	limit, err := raiseFileLimit(uint64(2*n + 500))
	if err != nil {
		return err
	}
	fmt.Printf("file descriptor limit %d (this process and the proxy)\n", limit)

	if dir == "" {
		if dir, err = os.MkdirTemp("", "idlemany-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}

	// The cluster's backends.
	var addrs []string
	for range nBackends {
		s, err := mysqldouble.New(mysqldouble.Config{NativeUsers: map[string]string{benchUser: benchPass}})
		if err != nil {
			return err
		}
		if err := s.Listen(); err != nil {
			return err
		}
		defer s.Close()
		addrs = append(addrs, s.Addr())
	}

	// The proxy.
	sqlPort, err := testenv.PickFreePort()
	if err != nil {
		return err
	}
	apiPort, err := testenv.PickFreePort()
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "switchyard.toml")
	cfg := fmt.Sprintf(`[proxy]
addr = "127.0.0.1:%d"
max-connections = %d
%s
[api]
addr = "127.0.0.1:%d"
read-token = "%s"

[log]
level = "warn"

[[cluster]]
name = "idle"
instances = [%s]
`, sqlPort, n+1000, loopsLine(eventLoops), apiPort, readToken, quoteAll(addrs))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(dir, "proxy.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(proxyBin, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", proxyBin, err)
	}
	pid := cmd.Process.Pid
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	proxyAddr := fmt.Sprintf("127.0.0.1:%d", sqlPort)
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", apiPort)
	if err := waitReady(proxyAddr, metricsURL, 30*time.Second); err != nil {
		return fmt.Errorf("the proxy did not come up (log: %s): %w", logf.Name(), err)
	}
	fmt.Printf("proxy pid %d on %s; %d mysqldouble backends; clients from %d source addresses; %s\n",
		pid, proxyAddr, nBackends, nSources, runtime.Version())

	// One dial function per source address.
	for i := range nSources {
		src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i))}
		d := &net.Dialer{LocalAddr: src, Timeout: 30 * time.Second}
		mysql.RegisterDialContext(fmt.Sprintf("src%d", i), func(ctx context.Context, addr string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		})
	}
	connectors := make([]driver.Connector, nSources)
	for i := range connectors {
		c := mysql.NewConfig()
		c.User, c.Passwd, c.Net, c.Addr = benchUser, benchPass, fmt.Sprintf("src%d", i), proxyAddr
		c.Timeout = 30 * time.Second
		if connectors[i], err = mysql.NewConnector(c); err != nil {
			return err
		}
	}

	time.Sleep(2 * time.Second) // let the start-up settle before the baseline
	base, err := sample(pid, metricsURL)
	if err != nil {
		return err
	}
	fmt.Printf("baseline: %s\n", base)
	fmt.Println("| sessions | proxy VmRSS MiB | KiB per session (VmRSS) | goroutines | stacks MiB | heap in use MiB | fds | open time s |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---:|")
	fmt.Printf("| 0 | %.1f | | %d | %.1f | %.1f | %d | |\n", mib(base.rss), base.goroutines, mib(base.stack), mib(base.heap), base.fds)

	conns := make([]driver.Conn, 0, n)
	start := time.Now()
	for _, mark := range marks {
		opened, err := open(connectors, len(conns), mark, parallel)
		conns = append(conns, opened...)
		if err != nil {
			return fmt.Errorf("opening sessions %d to %d: %d opened: %w", len(conns), mark, len(opened), err)
		}
		elapsed := time.Since(start)
		time.Sleep(2 * time.Second)
		now, err := sample(pid, metricsURL)
		if err != nil {
			return err
		}
		fmt.Printf("| %d | %.1f | **%.1f** | %d | %.1f | %.1f | %d | %.1f |\n", len(conns), mib(now.rss),
			float64(now.rss-base.rss)/1024/float64(len(conns)), now.goroutines, mib(now.stack), mib(now.heap), now.fds, elapsed.Seconds())
	}

	if hold > 0 {
		cpu0, err := benchstat.ProcCPU(pid)
		if err != nil {
			return err
		}
		if cpuProfile != "" {
			// The profile spans the hold (pprof takes whole seconds).
			url := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", apiPort, int(hold.Seconds()))
			if err := fetchTo(url, cpuProfile); err != nil {
				return fmt.Errorf("CPU profile: %w", err)
			}
		} else {
			time.Sleep(hold)
		}
		cpu1, err := benchstat.ProcCPU(pid)
		if err != nil {
			return err
		}
		now, err := sample(pid, metricsURL)
		if err != nil {
			return err
		}
		fmt.Printf("| %d, %s later | %.1f | **%.1f** | %d | %.1f | %.1f | %d | |\n", len(conns), hold, mib(now.rss),
			float64(now.rss-base.rss)/1024/float64(len(conns)), now.goroutines, mib(now.stack), mib(now.heap), now.fds)
		fmt.Printf("proxy CPU while the %d sessions idled for %s: %.2f %% of one core\n", len(conns), hold,
			100*(cpu1-cpu0).Seconds()/hold.Seconds())
	}
	if heapProfile != "" {
		if err := fetchTo(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/heap?gc=1", apiPort), heapProfile); err != nil {
			return fmt.Errorf("heap profile: %w", err)
		}
		// The profile ran a garbage collection, which also shrinks stacks that use
		// less than a quarter of their size.
		now, err := sample(pid, metricsURL)
		if err != nil {
			return err
		}
		fmt.Printf("| %d, after a GC | %.1f | **%.1f** | %d | %.1f | %.1f | %d | |\n", len(conns), mib(now.rss),
			float64(now.rss-base.rss)/1024/float64(len(conns)), now.goroutines, mib(now.stack), mib(now.heap), now.fds)
	}

	// Held, not only counted: every session answers a ping.
	okPings, bad := pingAll(conns, parallel)
	fmt.Printf("pinged all %d sessions: %d answered, %d failed\n", len(conns), okPings, bad)
	for _, c := range conns {
		_ = c.Close()
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d idle sessions did not answer a ping", bad, len(conns))
	}
	return nil
}

// open logs in sessions from..to-1, spreading them over the source addresses.
func open(connectors []driver.Connector, from, to, parallel int) ([]driver.Conn, error) {
	out := make([]driver.Conn, to-from)
	var (
		next     atomic.Int64
		firstErr atomic.Pointer[error]
		wg       sync.WaitGroup
	)
	next.Store(int64(from))
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for firstErr.Load() == nil {
				i := int(next.Add(1)) - 1
				if i >= to {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				c, err := connectors[i%len(connectors)].Connect(ctx)
				cancel()
				if err != nil {
					err = fmt.Errorf("session %d: %w", i, err)
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				out[i-from] = c
			}
		}()
	}
	wg.Wait()
	opened := slices.DeleteFunc(out, func(c driver.Conn) bool { return c == nil })
	if p := firstErr.Load(); p != nil {
		return opened, *p
	}
	return opened, nil
}

func pingAll(conns []driver.Conn, parallel int) (ok, bad int) {
	var okN, badN, next atomic.Int64
	var wg sync.WaitGroup
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(conns) {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := conns[i].(driver.Pinger).Ping(ctx)
				cancel()
				if err != nil {
					if badN.Add(1) == 1 {
						fmt.Fprintf(os.Stderr, "idlemany: ping session %d: %v\n", i, err)
					}
				} else {
					okN.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return int(okN.Load()), int(badN.Load())
}

type snapshot struct {
	rss, stack, heap uint64
	goroutines, fds  int
}

func (s snapshot) String() string {
	return fmt.Sprintf("VmRSS %.1f MiB, %d goroutines, stacks %.1f MiB, heap in use %.1f MiB, %d fds",
		mib(s.rss), s.goroutines, mib(s.stack), mib(s.heap), s.fds)
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// sample reads the proxy's VmRSS and fds from /proc and the Go runtime's figures from its
// /metrics page.
func sample(pid int, metricsURL string) (snapshot, error) {
	var s snapshot
	rss, err := benchstat.ProcRSS(pid)
	if err != nil {
		return s, err
	}
	s.rss = uint64(rss)
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.fds = len(fds)
	resp, err := http.Get(metricsURL)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		switch name {
		case "go_goroutines":
			s.goroutines = int(v)
		case "go_memstats_stack_inuse_bytes":
			s.stack = uint64(v)
		case "go_memstats_heap_inuse_bytes":
			s.heap = uint64(v)
		}
	}
	return s, sc.Err()
}

func fetchTo(url, path string) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+readToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func waitReady(sqlAddr, metricsURL string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", sqlAddr, time.Second)
		if err == nil {
			_ = c.Close()
			resp, herr := http.Get(metricsURL)
			if herr == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return nil
			}
			err = herr
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// raiseFileLimit raises RLIMIT_NOFILE to at least want (the hard limit too when
// permitted), and returns the soft limit in force.
func raiseFileLimit(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	cur := lim
	cur.Cur = want
	if cur.Max < want {
		cur.Max = want
	}
	hard := lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &cur); err != nil {
		return 0, fmt.Errorf("%d sessions need a file descriptor limit of %d in the proxy and in this process; "+
			"the hard limit is %d and raising it failed (it takes CAP_SYS_RESOURCE): %w", (want-500)/2, want, hard, err)
	}
	return cur.Cur, nil
}

func parseCheckpoints(list string, n int) ([]int, error) {
	var marks []int
	for f := range strings.SplitSeq(list, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("-checkpoints: %q is not a positive count", f)
		}
		if v < n {
			marks = append(marks, v)
		}
	}
	marks = append(marks, n)
	slices.Sort(marks)
	return slices.Compact(marks), nil
}

func quoteAll(addrs []string) string {
	q := make([]string, len(addrs))
	for i, a := range addrs {
		q[i] = strconv.Quote(a)
	}
	return strings.Join(q, ", ")
}

// loopsLine is the config line that sets [proxy] event-loops to v, or none
// for the proxy's default.
func loopsLine(v string) string {
	if v == "" {
		return ""
	}
	if _, err := strconv.Atoi(v); err != nil {
		v = strconv.Quote(v)
	}
	return "event-loops = " + v + "\n"
}
