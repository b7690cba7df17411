package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/test/testenv"
)

const (
	playgroundBuildTimeout = 10 * time.Minute
	playgroundReadyTimeout = 2 * time.Minute
	playgroundStopTimeout  = 60 * time.Second
)

// The playground (cmd/playground) as a user runs it: two clusters behind the
// real proxy, reachable by default cluster, route port and user prefix, and
// everything it started gone after one SIGTERM.
func TestPlayground(t *testing.T) {
	bin := buildPlayground(t)
	port := freePortPair(t)
	dir := filepath.Join(t.TempDir(), "pg")
	pg := startPlayground(t, bin, "--dir", dir, "--port", strconv.Itoa(port), "--proxy-bin", testenv.BuildProxy(t))

	out, err := pg.waitFor("playground ready", playgroundReadyTimeout)
	require.NoError(t, err)
	pids := parsePlaygroundPids(t, out)
	require.Len(t, pids["mariadb"], 4)
	require.Len(t, pids["proxy"], 1)
	for _, pid := range append(pids["mariadb"], pids["proxy"]...) {
		require.NoError(t, syscall.Kill(pid, 0), "pid %d should be running", pid)
	}
	require.FileExists(t, filepath.Join(dir, "proxy.toml"))
	require.Contains(t, out, fmt.Sprintf("mariadb -h127.0.0.1 -P%d -uapp -papp-pw app -e 'SELECT name FROM backend'", port))
	require.Contains(t, out, fmt.Sprintf("mariadb -h127.0.0.1 -P%d -uapp -papp-pw app", port+1))
	require.Contains(t, out, fmt.Sprintf("mariadb -h127.0.0.1 -P%d -uwest.app -papp-pw app", port))

	// The API tokens it printed work, and the API is closed without them.
	m := regexp.MustCompile(`HTTP API http://(\S+)/ .*\n.*API tokens .*: read (\S+)\s+admin (\S+)\n`).FindStringSubmatch(out)
	require.NotNil(t, m, "the playground prints the API address and its tokens:\n%s", out)
	apiAddr, readTok, adminTok := m[1], m[2], m[3]
	require.Contains(t, out, "SWITCHYARD_TOKEN="+readTok)
	status, _, err := apiCall(http.MethodGet, "http://"+apiAddr+"/api/v1/backends", readTok, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	status, _, err = apiCall(http.MethodGet, "http://"+apiAddr+"/api/v1/backends", "", nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, status)
	status, _, err = apiCall(http.MethodDelete, "http://"+apiAddr+"/api/v1/health/override", adminTok, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	// The printed proxyctl command works as printed (issue 14), and
	// "backends west" works like "clusters west".
	ctlLine := regexp.MustCompile(`proxyctl: (\S+) --api (http://\S+) clusters`).FindStringSubmatch(out)
	require.NotNil(t, ctlLine, "no proxyctl command in:\n%s", out)
	require.Equal(t, filepath.Join(filepath.Dir(bin), "proxyctl"), ctlLine[1])
	for _, args := range [][]string{{"clusters"}, {"clusters", "west"}, {"backends", "west"}} {
		ctlOut, err := exec.Command(ctlLine[1], append([]string{"--api", ctlLine[2], "--token", readTok}, args...)...).CombinedOutput()
		require.NoError(t, err, "proxyctl %v: %s", args, ctlOut)
		require.Contains(t, string(ctlOut), "west", "proxyctl %v", args)
		if args[0] == "backends" {
			require.Contains(t, string(ctlOut), "west/127.0.0.1:")
			require.NotContains(t, string(ctlOut), "east/")
		}
	}

	mainAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	west := net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1))
	require.True(t, strings.HasPrefix(playgroundBackend(t, mainAddr, "app"), "east-"), "the main port serves the default cluster")
	require.True(t, strings.HasPrefix(playgroundBackend(t, west, "app"), "west-"), "the route port serves west")
	require.True(t, strings.HasPrefix(playgroundBackend(t, mainAddr, "west.app"), "west-"), "the user prefix picks west")
	require.True(t, strings.HasPrefix(playgroundBackend(t, mainAddr, "east.app"), "east-"))

	require.NoError(t, pg.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-pg.done:
	case <-time.After(playgroundStopTimeout):
		t.Fatalf("the playground did not exit within %s of SIGTERM:\n%s", playgroundStopTimeout, pg.output())
	}
	require.NoError(t, pg.err, "the playground should exit 0:\n%s", pg.output())
	require.Contains(t, pg.output(), "playground stopped")
	for _, pid := range append(pids["mariadb"], pids["proxy"]...) {
		require.Eventually(t, func() bool {
			return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
		}, 5*time.Second, 50*time.Millisecond, "pid %d is still there after the playground exited", pid)
	}
	for _, addr := range []string{mainAddr, west} {
		_, err := net.DialTimeout("tcp", addr, time.Second)
		require.Error(t, err, "%s still accepts connections", addr)
	}
	proxyLog, err := os.ReadFile(filepath.Join(dir, "proxy.log"))
	require.NoError(t, err)
	require.NotContains(t, string(proxyLog), "WARNING: DATA RACE")
	require.NotContains(t, string(proxyLog), "panic:")
	// The tokens went to the terminal only, never to a log file.
	logs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	require.NoError(t, err)
	require.NotEmpty(t, logs)
	for _, l := range logs {
		data, err := os.ReadFile(l)
		require.NoError(t, err)
		require.NotContains(t, string(data), readTok, l)
		require.NotContains(t, string(data), adminTok, l)
	}
	require.NotContains(t, pg.output(), "WARNING: DATA RACE")
}

// buildPlayground builds ./cmd/playground, with -race when the proxy is
// built with it (SWITCHYARD_PROXY_RACE=1).
func buildPlayground(t *testing.T) string {
	t.Helper()
	root, err := testenv.ModuleRoot()
	require.NoError(t, err)
	bin := filepath.Join(t.TempDir(), "playground")
	args := []string{"build", "-o", bin}
	if os.Getenv("SWITCHYARD_PROXY_RACE") == "1" {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/playground")
	ctx, cancel := context.WithTimeout(context.Background(), playgroundBuildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go %v:\n%s", args, out)
	// As make playground does: proxyctl beside the playground.
	cmd = exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(filepath.Dir(bin), "proxyctl"), "./cmd/proxyctl")
	cmd.Dir = root
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, "go build ./cmd/proxyctl:\n%s", out)
	return bin
}

// freePortPair is a port p such that p and p+1 were both free a moment ago.
// It is drawn below the kernel's ephemeral range (32768 and up by default),
// where outgoing connections cannot take it before the proxy binds it.
func freePortPair(t *testing.T) int {
	t.Helper()
	for range 200 {
		p := 20000 + rand.IntN(12000)
		if portFree(p) && portFree(p+1) {
			return p
		}
	}
	t.Fatal("no two consecutive free ports on 127.0.0.1 between 20000 and 32000")
	return 0
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	return l.Close() == nil
}

// playgroundRun is the running playground; the exec package copies its
// output into buf.
type playgroundRun struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // read after done is closed

	mu  sync.Mutex
	buf bytes.Buffer
}

func (p *playgroundRun) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buf.Write(b)
}

func (p *playgroundRun) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buf.String()
}

// startPlayground runs bin with args. If the test ends with it still
// running, it gets SIGTERM (so it stops its children itself), then SIGKILL.
func startPlayground(t *testing.T, bin string, args ...string) *playgroundRun {
	t.Helper()
	p := &playgroundRun{done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	// The kernel kills the playground, and so its children, if this test
	// binary dies before the cleanup below.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, p.cmd.Start())
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(playgroundStopTimeout):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		if t.Failed() {
			t.Logf("playground output:\n%s", p.output())
		}
	})
	return p
}

// waitFor waits until a line of the output is want, and returns the output
// so far. It fails when the playground exits first.
func (p *playgroundRun) waitFor(want string, timeout time.Duration) (string, error) {
	deadline := time.After(timeout)
	for {
		out := p.output()
		for _, line := range strings.Split(out, "\n") {
			if line == want {
				return out, nil
			}
		}
		select {
		case <-p.done:
			return "", fmt.Errorf("the playground exited (%v) before printing %q:\n%s", p.err, want, p.output())
		case <-deadline:
			return "", fmt.Errorf("no %q within %s:\n%s", want, timeout, out)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

var pidsLineRE = regexp.MustCompile(`(?m)^pids: (.*)$`)

// parsePlaygroundPids reads "pids: proxy=N mariadb=N,N,N,N".
func parsePlaygroundPids(t *testing.T, out string) map[string][]int {
	t.Helper()
	m := pidsLineRE.FindStringSubmatch(out)
	require.NotNil(t, m, "no pids line in:\n%s", out)
	pids := map[string][]int{}
	for _, field := range strings.Fields(m[1]) {
		name, list, ok := strings.Cut(field, "=")
		require.True(t, ok, "bad pids field %q", field)
		for _, s := range strings.Split(list, ",") {
			pid, err := strconv.Atoi(s)
			require.NoError(t, err, "bad pid in %q", field)
			require.Positive(t, pid)
			pids[name] = append(pids[name], pid)
		}
	}
	return pids
}

// playgroundBackend logs in through addr as user/app-pw and returns the
// playground backend the session landed on.
func playgroundBackend(t *testing.T, addr, user string) string {
	t.Helper()
	cfg := testenv.MySQLConfig(addr, user, "app-pw")
	cfg.DBName = "app"
	db := testenv.OpenDB(t, cfg)
	return queryString(t, db, "SELECT name FROM backend")
}
