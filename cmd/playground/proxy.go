package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const (
	modulePath        = "github.com/switchyard-db/switchyard"
	proxyStartTimeout = 30 * time.Second
	proxyStopGrace    = 10 * time.Second
)

// proxyBinary returns the proxy to run: --proxy-bin as given, or bin/proxy of
// this module, built first unless --no-build.
func proxyBinary(ctx context.Context, o *options, out io.Writer) (string, error) {
	if o.proxyBin != "" {
		return checkExecutable(o.proxyBin)
	}
	root, err := moduleRoot()
	if err != nil {
		return "", fmt.Errorf("%w; run the playground from the repository or pass --proxy-bin", err)
	}
	bin := filepath.Join(root, "bin", "proxy")
	if o.noBuild {
		return checkExecutable(bin)
	}
	fmt.Fprintf(out, "building %s (go build ./cmd/proxy)\n", bin)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/proxy")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/proxy: %w", err)
	}
	return bin, nil
}

func checkExecutable(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("proxy binary: %w", err)
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("proxy binary %s is not an executable file", abs)
	}
	return abs, nil
}

// moduleRoot walks up from the working directory to this module's go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(data, []byte("module "+modulePath+"\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s above the working directory", modulePath)
		}
		dir = parent
	}
}

// proxyProcess is the running proxy binary. One goroutine owns Wait, so that
// the exit can be waited for from anywhere and a reaped pid is never
// signalled.
type proxyProcess struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // the exit status, read after done is closed
}

// startProxy runs `bin --config configPath` with its output in logPath, in a
// process group of its own so that the terminal's Ctrl-C reaches only the
// playground, which stops the proxy first.
func startProxy(bin, configPath, logPath string) (*proxyProcess, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--config", configPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &proxyProcess{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proxyProcess) pid() int { return p.cmd.Process.Pid }

// exitErr describes an exit nobody asked for, with the end of the log.
func (p *proxyProcess) exitErr() error {
	return fmt.Errorf("the proxy (pid %d) exited: %v\n--- last lines of %s ---\n%s",
		p.pid(), p.err, p.logPath, logTail(p.logPath, 20))
}

// stop sends SIGTERM and waits for the graceful shutdown; after
// proxyStopGrace, or at once when hurry is closed, it sends SIGKILL.
func (p *proxyProcess) stop(hurry <-chan struct{}) error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(proxyStopGrace):
	case <-hurry:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("killed after SIGTERM: %v", p.err)
}

// waitAccepting waits until every addr accepts TCP connections, the proxy
// exits, ctx ends or proxyStartTimeout passes.
func (p *proxyProcess) waitAccepting(ctx context.Context, addrs ...string) error {
	ctx, cancel := context.WithTimeout(ctx, proxyStartTimeout)
	defer cancel()
	for _, addr := range addrs {
		for {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				_ = conn.Close()
				break
			}
			select {
			case <-p.done:
				return p.exitErr()
			case <-ctx.Done():
				return fmt.Errorf("the proxy accepted no connection on %s: %w (log: %s)", addr, ctx.Err(), p.logPath)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// logTail is the last n lines of a file, or "" when it cannot be read.
func logTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
