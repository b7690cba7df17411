package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// process is one child process whose stdout and stderr go to a log file. A single goroutine
// owns cmd.Wait so that any number of callers can wait for, or poll, the exit.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // exit status; read only after done is closed
}

func startProcess(logPath string, name string, args ...string) (*process, error) {
	return startProcessAttr(logPath, childProcAttr(), name, args...)
}

// startProcessAttr is startProcess with the caller's process attributes.
func startProcessAttr(logPath string, attr *syscall.SysProcAttr, name string, args ...string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log %s: %w", logPath, err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal delivers sig unless the process has already been reaped, so a recycled pid is never hit.
// SIGSTOP returns only once every thread has stopped (as Freeze does): kill(2) alone lets the process go
// on answering for a while, and a test that freezes a process expects it hung from then on.
func (p *process) signal(sig os.Signal) error {
	if p.exited() {
		return os.ErrProcessDone
	}
	if err := p.cmd.Process.Signal(sig); err != nil || sig != syscall.SIGSTOP {
		return err
	}
	return waitStopped(p.pid())
}

// wait blocks until the process exits and returns its exit status.
func (p *process) wait() error {
	<-p.done
	return p.err
}

// kill sends SIGKILL and waits for the exit. A signal error only means the process already
// exited, and the waiter reaps it either way.
func (p *process) kill() {
	_ = p.signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM, waits up to grace for a clean exit, then falls back to SIGKILL.
func (p *process) stop(grace time.Duration) error {
	if err := p.signal(syscall.SIGTERM); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return p.wait()
		}
		return fmt.Errorf("sigterm pid %d: %w", p.pid(), err)
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
		p.kill()
		return fmt.Errorf("pid %d did not exit within %v of SIGTERM; killed", p.pid(), grace)
	}
}
