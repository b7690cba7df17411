package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/switchyard-db/switchyard/test/mysqldouble"
)

// The scale test's fake TiDB servers run in a child process (this binary
// re-executed with -serve-backends), so that the CPU they spend answering
// probes is not counted as the proxy's. Protocol on the child's stdin and
// stdout, one line each:
//
//	child:  B <sql addr> <status port>   (once per backend)
//	child:  READY
//	parent: stats          child: STATS <sql connections> <http requests> <COM_PINGs>
//	parent closes stdin:   child closes every server and exits

// backend is one fake TiDB: a MySQL greeting on Addr and, when StatusPort is
// not 0, TiDB's /status and /metrics on the same host.
type backend struct {
	Addr       string
	StatusPort uint
}

// statusHandler serves TiDB-shaped /status and /metrics. The CPU counter and
// RSS move with time, so every scrape yields new figures, as with a real TiDB.
type statusHandler struct {
	start    time.Time
	requests *atomic.Int64
	padding  string // extra exposition lines, to model TiDB's large page
	// paddingGz is padding compressed once, as a gzip member of its own,
	// when pages are served gzipped to whoever asks (-metrics-gzip), as
	// TiDB's are: the page is then the four metrics compressed at each
	// request, followed by it (gzip readers read the members as one).
	paddingGz []byte
}

func (h *statusHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.requests.Add(1)
	switch r.URL.Path {
	case "/status":
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"connections":0,"version":"8.0.11-TiDB-v8.5.0","git_hash":"bench"}`)
	case "/metrics":
		up := time.Since(h.start).Seconds()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		var out io.Writer = w
		var zw *gzip.Writer
		if h.paddingGz != nil && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			zw = gzip.NewWriter(w)
			out = zw
		}
		fmt.Fprintf(out, "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %g\n", 0.4*up)
		fmt.Fprintf(out, "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %d\n", (2<<30)+(int64(up)%64)<<20)
		_, _ = io.WriteString(out, "# TYPE tidb_server_maxprocs gauge\ntidb_server_maxprocs 4\n")
		_, _ = io.WriteString(out, "# TYPE tidb_server_memory_quota_bytes gauge\ntidb_server_memory_quota_bytes 8.589934592e+09\n")
		if zw != nil {
			_ = zw.Close()
			_, _ = w.Write(h.paddingGz)
			return
		}
		_, _ = io.WriteString(w, h.padding)
	default:
		http.NotFound(w, r)
	}
}

// padding returns about kb KiB of histogram lines of a metric the reader
// does not use (a TiDB page is mostly such histograms).
func padding(kb int) string {
	var b strings.Builder
	b.WriteString("# TYPE tidb_bench_padding_seconds histogram\n")
	for i := 0; b.Len() < kb<<10; i++ {
		fmt.Fprintf(&b, "tidb_bench_padding_seconds_bucket{sql_type=\"Select\",instance=\"n%d\",le=\"%g\"} %d\n", i/20, float64(int64(1)<<(i%20))/1000, i)
	}
	return b.String()
}

// The probe account every backend has (-probe-user).
const (
	benchProbeUser     = "switchyard_probe"
	benchProbePassword = "bench-probe-pw"
)

// serveBackends is the child's main: n backends until stdin closes.
func serveBackends(n int, status bool, padKB int, gz bool) error {
	// One RSA key for all: each would otherwise generate its own 2048-bit key.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	var requests atomic.Int64
	h := &statusHandler{start: time.Now(), requests: &requests, padding: padding(padKB)}
	if padKB == 0 {
		h.padding = ""
	}
	if gz {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		_, _ = io.WriteString(zw, h.padding)
		if err := zw.Close(); err != nil {
			return err
		}
		h.paddingGz = b.Bytes()
	}
	var doubles []*mysqldouble.Server
	var https []*http.Server
	defer func() {
		for _, s := range https {
			_ = s.Close()
		}
		for _, d := range doubles {
			_ = d.Close()
		}
	}()
	out := bufio.NewWriter(os.Stdout)
	for range n {
		d, err := mysqldouble.New(mysqldouble.Config{RSAKey: key,
			NativeUsers: map[string]string{benchProbeUser: benchProbePassword}})
		if err != nil {
			return err
		}
		if err := d.Listen(); err != nil {
			return err
		}
		doubles = append(doubles, d)
		port := 0
		if status {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return fmt.Errorf("status listener: %w", err)
			}
			srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
			https = append(https, srv)
			go func() { _ = srv.Serve(ln) }()
			port = ln.Addr().(*net.TCPAddr).Port
		}
		fmt.Fprintf(out, "B %s %d\n", d.Addr(), port)
	}
	fmt.Fprintln(out, "READY")
	if err := out.Flush(); err != nil {
		return err
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() != "stats" {
			continue
		}
		var conns, pings int64
		for _, d := range doubles {
			conns += d.Stats().Connections
			pings += d.Pings()
		}
		fmt.Fprintf(out, "STATS %d %d %d\n", conns, requests.Load(), pings)
		if err := out.Flush(); err != nil {
			return err
		}
	}
	return in.Err()
}

// backendProc is the parent's handle on the child.
type backendProc struct {
	Backends []backend
	Pid      int

	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
	exit chan error
}

// startBackendProc re-executes this binary to serve n backends.
func startBackendProc(n int, status bool, padKB int, gz bool) (*backendProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-serve-backends", strconv.Itoa(n),
		"-status="+strconv.FormatBool(status), "-metrics-pad-kb", strconv.Itoa(padKB),
		"-metrics-gzip="+strconv.FormatBool(gz))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = childProcAttr()
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &backendProc{Pid: cmd.Process.Pid, cmd: cmd, in: in, out: bufio.NewScanner(stdout), exit: make(chan error, 1)}
	go func() { p.exit <- cmd.Wait() }()
	for p.out.Scan() {
		f := strings.Fields(p.out.Text())
		if len(f) == 1 && f[0] == "READY" {
			return p, nil
		}
		if len(f) != 3 || f[0] != "B" {
			p.Stop()
			return nil, fmt.Errorf("backend process: unexpected line %q", p.out.Text())
		}
		port, err := strconv.ParseUint(f[2], 10, 16)
		if err != nil {
			p.Stop()
			return nil, fmt.Errorf("backend process: %q: %w", p.out.Text(), err)
		}
		p.Backends = append(p.Backends, backend{Addr: f[1], StatusPort: uint(port)})
	}
	p.Stop()
	return nil, errors.New("backend process exited before READY (see its stderr above)")
}

// Stats returns how many SQL connections, HTTP requests and COM_PINGs the
// backends have answered so far.
func (p *backendProc) Stats() (conns, requests, pings int64, err error) {
	if _, err := io.WriteString(p.in, "stats\n"); err != nil {
		return 0, 0, 0, err
	}
	if !p.out.Scan() {
		return 0, 0, 0, errors.New("backend process: no answer to stats")
	}
	if _, err := fmt.Sscanf(p.out.Text(), "STATS %d %d %d", &conns, &requests, &pings); err != nil {
		return 0, 0, 0, fmt.Errorf("backend process: %q: %w", p.out.Text(), err)
	}
	return conns, requests, pings, nil
}

// Stop closes the child's stdin, which makes it exit; after 10 s it gets
// SIGKILL (by its pid, which is ours).
func (p *backendProc) Stop() {
	if p.cmd == nil {
		return
	}
	_ = p.in.Close()
	select {
	case <-p.exit:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exit
	}
	p.cmd = nil
}
