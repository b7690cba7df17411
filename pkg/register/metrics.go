package register

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"go.uber.org/zap"
)

// The metric names are TiDB's, so that the proxy's metrics reader computes a
// generic backend's CPU and memory usage with the same queries.
const (
	metricCPU      = "process_cpu_seconds_total"
	metricRSS      = "process_resident_memory_bytes"
	metricMaxProcs = "tidb_server_maxprocs"
	metricQuota    = "tidb_server_memory_quota_bytes"
)

// clockTicks is USER_HZ, which the kernel fixes at 100 for user space on
// every Linux architecture; reading it (sysconf) would need cgo.
const clockTicks = 100

// errNoProcess means the backend process is gone (or a zombie).
var errNoProcess = errors.New("backend process not running")

// procFS locates the kernel's views; tests point it at fixtures.
type procFS struct {
	proc   string // normally /proc
	cgroup string // the cgroup v2 mount, normally /sys/fs/cgroup
}

var defaultProcFS = procFS{proc: "/proc", cgroup: "/sys/fs/cgroup"}

// procStats is what /metrics reports about the backend process.
type procStats struct {
	cpuSeconds float64
	rssBytes   uint64
}

func (r *Registrar) handleMetrics(w http.ResponseWriter, _ *http.Request) {
	var b bytes.Buffer
	pid, err := r.backendPid()
	var st *procStats
	if err == nil && pid > 0 {
		st, err = r.proc.stats(pid)
	}
	if err != nil {
		// A comment, ignored by parsers, says why the process metrics are missing.
		fmt.Fprintf(&b, "# backend process metrics unavailable: %s\n", oneLine(err.Error()))
	}
	if st != nil {
		writeMetric(&b, metricCPU, "counter", "Total user and system CPU time spent in seconds.",
			strconv.FormatFloat(st.cpuSeconds, 'g', -1, 64))
		writeMetric(&b, metricRSS, "gauge", "Resident memory size in bytes.",
			strconv.FormatUint(st.rssBytes, 10))
	}
	writeMetric(&b, metricMaxProcs, "gauge", "The number of CPUs usable by the backend.",
		strconv.Itoa(runtime.NumCPU()))
	if st == nil {
		pid = 0 // no cgroup of a process that is not there
	}
	if quota, ok := r.proc.memoryQuota(pid); ok {
		writeMetric(&b, metricQuota, "gauge", "The memory available to the backend in bytes.",
			strconv.FormatUint(quota, 10))
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if _, err := w.Write(b.Bytes()); err != nil {
		r.lg.Debug("writing /metrics", zap.Error(err))
	}
}

func writeMetric(b *bytes.Buffer, name, typ, help, value string) {
	fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s %s\n%s %s\n", name, help, name, typ, name, value)
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// backendPid is Config.Pid, else the pid file's content read now (the
// backend may have restarted), else 0 when neither is configured.
func (r *Registrar) backendPid() (int, error) {
	if r.cfg.Pid != 0 || r.cfg.PidFile == "" {
		return r.cfg.Pid, nil
	}
	b, err := os.ReadFile(r.cfg.PidFile)
	if err != nil {
		return 0, fmt.Errorf("pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: no pid in %q", r.cfg.PidFile, strings.TrimSpace(string(b)))
	}
	return pid, nil
}

// stats reads the CPU time from /proc/<pid>/stat and the resident set from
// /proc/<pid>/statm.
func (p procFS) stats(pid int) (*procStats, error) {
	dir := filepath.Join(p.proc, strconv.Itoa(pid))
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("pid %d: %w", pid, errNoProcess)
	}
	if err != nil {
		return nil, err
	}
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'. Then: 0 state … 11 utime, 12 stime (in clock ticks).
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return nil, fmt.Errorf("pid %d: malformed stat", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return nil, fmt.Errorf("pid %d: malformed stat", pid)
	}
	if f[0] == "Z" || f[0] == "X" {
		return nil, fmt.Errorf("pid %d: %w (state %s)", pid, errNoProcess, f[0])
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("pid %d: malformed stat: %w", pid, err)
	}
	statm, err := os.ReadFile(filepath.Join(dir, "statm"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("pid %d: %w", pid, errNoProcess)
	}
	if err != nil {
		return nil, err
	}
	m := strings.Fields(string(statm))
	if len(m) < 2 {
		return nil, fmt.Errorf("pid %d: malformed statm", pid)
	}
	pages, err := strconv.ParseUint(m[1], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("pid %d: malformed statm: %w", pid, err)
	}
	return &procStats{
		cpuSeconds: float64(utime+stime) / clockTicks,
		rssBytes:   pages * uint64(os.Getpagesize()),
	}, nil
}
