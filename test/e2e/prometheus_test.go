//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/switchyard-db/switchyard/pkg/metricsreader"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// TestPrometheusMetricsReader runs Debian's real prometheus binary, lets it
// scrape a TiDB-style status page under job "tidb", and checks that the
// metrics reader gets CPU and memory through Prometheus's query API.
func TestPrometheusMetricsReader(t *testing.T) {
	bin := lookupPrometheus(t)

	// 2 CPU seconds per wall second on 4 procs: CPU 0.5. 1 GiB of 4 GiB: memory 0.25.
	began := time.Now()
	status := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		cpu := 100 + 2*time.Since(began).Seconds()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"+
			"# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %g\n"+
			"# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %d\n"+
			"# TYPE tidb_server_maxprocs gauge\ntidb_server_maxprocs 4\n"+
			"# TYPE tidb_server_memory_quota_bytes gauge\ntidb_server_memory_quota_bytes %d\n"+
			"# TYPE tidb_server_connections gauge\ntidb_server_connections 3\n",
			cpu, 1<<30, 4<<30)
	}))
	t.Cleanup(status.Close)
	_, portStr, err := net.SplitHostPort(status.Listener.Addr().String())
	require.NoError(t, err)
	statusPort, err := strconv.ParseUint(portStr, 10, 16)
	require.NoError(t, err)

	promAddr := startPrometheus(t, bin, status.Listener.Addr().String())

	r := metricsreader.NewReader(zaptest.NewLogger(t), "main", metricsreader.Config{
		PrometheusURL: "http://" + promAddr,
		Interval:      200 * time.Millisecond,
		Timeout:       2 * time.Second,
	})
	// Nothing listens on the SQL address: the reader never dials it.
	target := metricsreader.Target{Addr: "127.0.0.1:4000", StatusPort: uint(statusPort)}
	r.SetTargets([]metricsreader.Target{target})
	r.Start(context.Background())
	t.Cleanup(r.Close)

	// Until Prometheus has two samples for irate, the reader may scrape the
	// page itself; only a reading from Prometheus ends the wait.
	require.Eventually(t, func() bool {
		m, ok := r.Results()[target.Addr]
		return ok && m.Source == metricsreader.SourcePrometheus && m.HasCPU && m.HasMemory &&
			r.Source() == metricsreader.SourcePrometheus
	}, 60*time.Second, 100*time.Millisecond, "no CPU and memory from prometheus; last results %+v, source %q",
		r.Results(), r.Source())
	m := r.Results()[target.Addr]
	require.InDelta(t, 0.25, m.Memory, 1e-9)
	// Prometheus stamps each scrape itself, so the rate carries its jitter.
	require.InDelta(t, 0.5, m.CPU, 0.2)
}

// lookupPrometheus finds the prometheus binary. A missing binary fails the
// test: CI installs it (scripts/install-deps.sh), and a skip would hide that.
func lookupPrometheus(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SWITCHYARD_PROMETHEUS"); p != "" {
		return p
	}
	for _, c := range []string{"prometheus", "/usr/bin/prometheus"} {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	t.Fatal("prometheus is not installed: run scripts/install-deps.sh (apt-get install prometheus), " +
		"or set SWITCHYARD_PROMETHEUS to the binary")
	return ""
}

// startPrometheus runs prometheus on a free loopback port with one job
// "tidb" scraping scrapeAddr every second, waits until it is ready and stops
// it (by its pid) when the test ends. It returns the listen address.
func startPrometheus(t *testing.T, bin, scrapeAddr string) string {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "prometheus.yml")
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: tidb
    static_configs:
      - targets: [%q]
`, scrapeAddr)
	require.NoError(t, os.WriteFile(cfgPath, []byte(cfg), 0o644))

	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ { // another process may take the free port first
		addr := testenv.FreeAddr(t)
		logPath := filepath.Join(dir, fmt.Sprintf("prometheus-%d.log", attempt))
		p, err := launchPrometheus(bin, logPath,
			"--config.file="+cfgPath,
			"--storage.tsdb.path="+filepath.Join(dir, fmt.Sprintf("data-%d", attempt)),
			"--web.listen-address="+addr,
		)
		require.NoError(t, err)
		if lastErr = waitPrometheusReady(addr, p, 60*time.Second); lastErr == nil {
			t.Cleanup(func() {
				p.stop(t)
				if t.Failed() {
					t.Logf("prometheus output (%s):\n%s", logPath, promLogTail(logPath, 40))
				}
			})
			return addr
		}
		p.stop(t)
		lastErr = fmt.Errorf("%w\n--- prometheus output ---\n%s", lastErr, promLogTail(logPath, 40))
		if !strings.Contains(lastErr.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("start prometheus: %v", lastErr)
	return ""
}

// promProcess owns one prometheus child; its waiter goroutine ends when the
// process is reaped, which stop waits for.
type promProcess struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // read after done
}

func launchPrometheus(bin, logPath string, args ...string) (*promProcess, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// The kernel kills prometheus if the test binary dies before cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &promProcess{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// stop sends SIGTERM to the pid, then SIGKILL if it has not exited in time.
func (p *promProcess) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Logf("prometheus (pid %d) ignored SIGTERM; killing it", p.cmd.Process.Pid)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// waitPrometheusReady polls /-/ready until it answers 200, the process
// exits or the timeout passes.
func waitPrometheusReady(addr string, p *promProcess, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		resp, err := client.Get("http://" + addr + "/-/ready")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		lastErr = err
		if time.Now().After(deadline) {
			return fmt.Errorf("prometheus (pid %d) not ready on %s: %w", p.cmd.Process.Pid, addr, lastErr)
		}
		select {
		case <-p.done:
			return fmt.Errorf("prometheus (pid %d) exited during start-up: %v", p.cmd.Process.Pid, p.err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func promLogTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
