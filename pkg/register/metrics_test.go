package register

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/require"
)

func scrape(t *testing.T, r *Registrar) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	r.handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Header().Get("Content-Type"), "text/plain")
	var p expfmt.TextParser
	mfs, err := p.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	require.NoError(t, err, rec.Body.String())
	return mfs
}

func value(t *testing.T, mfs map[string]*dto.MetricFamily, name string) float64 {
	t.Helper()
	mf := mfs[name]
	require.NotNil(t, mf, name)
	require.Len(t, mf.GetMetric(), 1, name)
	m := mf.GetMetric()[0]
	if mf.GetType() == dto.MetricType_COUNTER {
		return m.GetCounter().GetValue()
	}
	require.Equal(t, dto.MetricType_GAUGE, mf.GetType(), name)
	return m.GetGauge().GetValue()
}

func newTestRegistrar(t *testing.T, cfg Config) *Registrar {
	t.Helper()
	cfg.EtcdEndpoints = []string{"127.0.0.1:1"}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:3306"
	}
	if cfg.StatusAddr == "" {
		cfg.StatusAddr = "127.0.0.1:0"
	}
	r, err := New(zapNop(), cfg)
	require.NoError(t, err)
	return r
}

// The test process stands in for the backend: its own /proc entries are real.
func TestMetricsOfARealProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	mfs := scrape(t, newTestRegistrar(t, Config{Pid: os.Getpid()}))
	require.GreaterOrEqual(t, value(t, mfs, metricCPU), 0.0)
	require.Greater(t, value(t, mfs, metricRSS), float64(1<<20), "a Go test binary is bigger than 1 MiB")
	require.Equal(t, float64(runtime.NumCPU()), value(t, mfs, metricMaxProcs))
	require.Greater(t, value(t, mfs, metricQuota), 0.0)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}

// fakeProc builds a /proc and a cgroup mount with one process, pid 4242,
// named with spaces and parentheses as comm may be.
func fakeProc(t *testing.T) procFS {
	t.Helper()
	root := t.TempDir()
	p := procFS{proc: filepath.Join(root, "proc"), cgroup: filepath.Join(root, "cgroup")}
	writeFile(t, filepath.Join(p.proc, "meminfo"), "MemTotal:       16318452 kB\nMemFree:         1000 kB\n")
	writeFile(t, filepath.Join(p.proc, "4242", "stat"),
		"4242 (mariadbd (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 8 0 1000 0 0 0\n")
	writeFile(t, filepath.Join(p.proc, "4242", "statm"), "100000 2500 300 1 0 2000 0\n")
	writeFile(t, filepath.Join(p.proc, "4242", "cgroup"), "0::/system.slice/mariadb.service\n")
	writeFile(t, filepath.Join(p.cgroup, "system.slice", "mariadb.service", "memory.max"), "max\n")
	return p
}

func TestMetricsFromProcFiles(t *testing.T) {
	p := fakeProc(t)
	r := newTestRegistrar(t, Config{Pid: 4242})
	r.proc = p
	mfs := scrape(t, r)
	require.InDelta(t, 3.8, value(t, mfs, metricCPU), 1e-9, "(250+130)/100")
	require.Equal(t, float64(2500*os.Getpagesize()), value(t, mfs, metricRSS))
	require.Equal(t, float64(16318452*1024), value(t, mfs, metricQuota), `memory.max "max": MemTotal`)

	// A numeric limit on an ancestor binds the process.
	writeFile(t, filepath.Join(p.cgroup, "system.slice", "memory.max"), "2147483648\n")
	require.Equal(t, float64(2<<30), value(t, scrape(t, r), metricQuota))
	// A limit above the host's memory does not raise the quota.
	writeFile(t, filepath.Join(p.cgroup, "system.slice", "memory.max"), "99999999999999\n")
	require.Equal(t, float64(16318452*1024), value(t, scrape(t, r), metricQuota))

	// A zombie is gone.
	writeFile(t, filepath.Join(p.proc, "4242", "stat"),
		"4242 (mariadbd) Z 1 4242 4242 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 8 0 1000 0 0 0\n")
	mfs = scrape(t, r)
	require.NotContains(t, mfs, metricCPU)
	require.NotContains(t, mfs, metricRSS)
}

// The pid file is read on every scrape: a restarted backend is followed, a
// stopped one loses its process metrics instead of reporting stale values.
func TestMetricsFollowPidFile(t *testing.T) {
	p := fakeProc(t)
	pidFile := filepath.Join(t.TempDir(), "mysqld.pid")
	r := newTestRegistrar(t, Config{PidFile: pidFile})
	r.proc = p

	mfs := scrape(t, r) // no pid file yet
	require.NotContains(t, mfs, metricCPU)
	require.NotContains(t, mfs, metricRSS)
	require.Contains(t, mfs, metricMaxProcs)
	require.Equal(t, float64(16318452*1024), value(t, mfs, metricQuota), "the host's memory without a process")

	writeFile(t, pidFile, "4242\n")
	mfs = scrape(t, r)
	require.InDelta(t, 3.8, value(t, mfs, metricCPU), 1e-9)

	writeFile(t, pidFile, strconv.Itoa(4243)) // restarted, and that pid is not running
	mfs = scrape(t, r)
	require.NotContains(t, mfs, metricCPU)
	require.NotContains(t, mfs, metricRSS)

	writeFile(t, pidFile, "garbage")
	mfs = scrape(t, r)
	require.NotContains(t, mfs, metricCPU)
	require.Contains(t, mfs, metricMaxProcs)
}

func TestMetricsWithoutAnyPid(t *testing.T) {
	r := newTestRegistrar(t, Config{})
	r.proc = procFS{proc: t.TempDir(), cgroup: t.TempDir()} // not even meminfo
	mfs := scrape(t, r)
	require.Equal(t, []string{metricMaxProcs}, keys(mfs))
}

func keys(m map[string]*dto.MetricFamily) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
