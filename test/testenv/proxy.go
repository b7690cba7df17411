package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

const (
	proxyStartTimeout = 30 * time.Second
	proxyBuildTimeout = 10 * time.Minute
)

var proxyBuild struct {
	once sync.Once
	bin  string
	err  error
}

// BuildProxy builds ./cmd/proxy once per test binary and returns the binary's path; later calls
// (and failures) reuse the first result. SWITCHYARD_PROXY_BIN names a prebuilt binary instead,
// and SWITCHYARD_PROXY_RACE=1 builds with -race. The binary is removed by Teardown.
func BuildProxy(t testing.TB) string {
	t.Helper()
	proxyBuild.once.Do(func() {
		proxyBuild.bin, proxyBuild.err = buildProxy()
	})
	if proxyBuild.err != nil {
		t.Fatalf("testenv: build proxy: %v", proxyBuild.err)
	}
	return proxyBuild.bin
}

func buildProxy() (string, error) {
	if bin := os.Getenv("SWITCHYARD_PROXY_BIN"); bin != "" {
		return bin, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("go toolchain not in PATH: %w", err)
	}
	dir, err := os.MkdirTemp("", "switchyard-proxy-bin-")
	if err != nil {
		return "", err
	}
	onTeardown(func() { _ = os.RemoveAll(dir) })
	bin := filepath.Join(dir, "proxy")
	args := []string{"build", "-o", bin}
	if os.Getenv("SWITCHYARD_PROXY_RACE") == "1" {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/proxy")
	ctx, cancel := context.WithTimeout(context.Background(), proxyBuildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %v in %s: %w\n%s", args, root, err, out)
	}
	return bin, nil
}

// ModuleRoot is the directory holding go.mod, found by walking up from the working directory
// (go test runs in the package directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Proxy is a running proxy process.
type Proxy struct {
	Addr       string // [proxy] addr from the config
	ConfigPath string
	LogPath    string // stdout and stderr

	proc *process
}

// WithEventLoops sets proxy.event-loops to $SWITCHYARD_E2E_EVENT_LOOPS in a
// config that does not set it, so that the whole suite can run with
// sessions on event loops of their own number, or on goroutines
// (`SWITCHYARD_E2E_EVENT_LOOPS=0 make e2e`; unset, the proxy's default
// "auto").
// StartProxy applies it; a test that writes or compares config text of its
// own applies it too, so that what it writes keeps the running setting.
func WithEventLoops(configTOML string) string {
	n := os.Getenv("SWITCHYARD_E2E_EVENT_LOOPS")
	if n == "" || strings.Contains(configTOML, "event-loops") {
		return configTOML
	}
	lines := strings.SplitAfter(configTOML, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) == "[proxy]" {
			if _, err := strconv.Atoi(n); err != nil {
				n = strconv.Quote(n) // "auto"
			}
			lines[i] = l + "event-loops = " + n + "\n"
			return strings.Join(lines, "")
		}
	}
	return configTOML
}

// StartProxy writes configTOML to a file, runs `bin --config FILE` and waits until [proxy] addr
// accepts TCP connections, and [api] addr too when the config names one with a fixed port (the
// proxy opens its SQL listener first: a test that called the API at once once met a refused
// connection). Start-up failures are fatal and quote the proxy's output. The proxy
// is killed when the test ends if it is still running, and its output is logged if the test
// failed.
func StartProxy(t testing.TB, bin, configTOML string) *Proxy {
	t.Helper()
	var cfg struct {
		Proxy struct {
			Addr string `toml:"addr"`
		} `toml:"proxy"`
		API struct {
			Addr string `toml:"addr"`
		} `toml:"api"`
	}
	if _, err := toml.Decode(configTOML, &cfg); err != nil {
		t.Fatalf("testenv: proxy config is not valid TOML: %v", err)
	}
	if _, port, err := net.SplitHostPort(cfg.Proxy.Addr); err != nil || port == "0" {
		t.Fatalf("testenv: proxy config needs [proxy] addr with a fixed port (see FreeAddr), got %q", cfg.Proxy.Addr)
	}
	configTOML = WithEventLoops(configTOML)
	dir := t.TempDir()
	p := &Proxy{
		Addr:       cfg.Proxy.Addr,
		ConfigPath: filepath.Join(dir, "proxy.toml"),
		LogPath:    filepath.Join(dir, "proxy.log"),
	}
	if err := os.WriteFile(p.ConfigPath, []byte(configTOML), 0o644); err != nil {
		t.Fatalf("testenv: write proxy config: %v", err)
	}
	proc, err := startProcess(p.LogPath, bin, "--config", p.ConfigPath)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	p.proc = proc
	t.Cleanup(func() {
		proc.kill()
		out := p.LogContents()
		// A race-enabled binary (SWITCHYARD_PROXY_RACE=1) reports races on
		// stderr and carries on; they must fail the test that provoked them.
		if strings.Contains(out, "WARNING: DATA RACE") || strings.Contains(out, "panic:") {
			t.Errorf("testenv: the proxy reported a data race or a panic")
		}
		showLogIfFailed(t, "proxy "+p.Addr, p.LogPath, 0)
	})
	deadline := time.Now().Add(proxyStartTimeout)
	wait := []string{p.Addr}
	if _, port, err := net.SplitHostPort(cfg.API.Addr); err == nil && port != "0" {
		wait = append(wait, cfg.API.Addr)
	}
	for _, addr := range wait {
		if err := waitAcceptingTCP(addr, proc, deadline); err != nil {
			proc.kill()
			t.Fatalf("testenv: start proxy: %v\n--- proxy output ---\n%s", err, p.LogContents())
		}
	}
	return p
}

// Pid is the proxy's process id.
func (p *Proxy) Pid() int { return p.proc.pid() }

// Signal sends sig (SIGHUP to reload, SIGTERM for graceful shutdown). It returns
// os.ErrProcessDone once the proxy has exited.
func (p *Proxy) Signal(sig os.Signal) error { return p.proc.signal(sig) }

// Wait blocks until the proxy exits and returns its exit status (nil for exit code 0). Any
// number of goroutines may wait.
func (p *Proxy) Wait() error { return p.proc.wait() }

// Exited is closed when the proxy has exited, for select with a timeout.
func (p *Proxy) Exited() <-chan struct{} { return p.proc.done }

// Kill sends SIGKILL and waits for the exit.
func (p *Proxy) Kill() { p.proc.kill() }

// LogContents is everything the proxy wrote to stdout and stderr so far.
func (p *Proxy) LogContents() string { return readFrom(p.LogPath, 0) }

// WriteConfig replaces the config file atomically (write, then rename), as an operator's editor
// or config management would; follow with Signal(syscall.SIGHUP) unless the proxy watches it.
func (p *Proxy) WriteConfig(configTOML string) error {
	tmp := p.ConfigPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(configTOML), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p.ConfigPath)
}

func waitAcceptingTCP(addr string, proc *process, deadline time.Time) error {
	var lastErr error
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return conn.Close()
		}
		lastErr = err
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d accepted no connection on %s before the deadline: %w", proc.pid(), addr, lastErr)
		}
		select {
		case <-proc.done:
			return fmt.Errorf("pid %d exited during start-up: %v", proc.pid(), proc.err)
		case <-time.After(25 * time.Millisecond):
		}
	}
}
