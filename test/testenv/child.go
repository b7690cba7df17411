package testenv

import (
	"fmt"
	"os"
)

// Child is a helper process that a test runs beside the servers testenv knows about (an etcd
// server, say), with its stdout and stderr appended to a log file. The caller owns it and must
// Kill it; on Linux the kernel also kills it if the test binary dies.
type Child struct {
	LogPath string
	proc    *process
}

// LaunchChild starts name with args, appending its output to logPath.
func LaunchChild(logPath, name string, args ...string) (*Child, error) {
	proc, err := startProcess(logPath, name, args...)
	if err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	return &Child{LogPath: logPath, proc: proc}, nil
}

// Pid is the child's process id.
func (c *Child) Pid() int { return c.proc.pid() }

// Signal sends sig (SIGSTOP, SIGCONT, ...) unless the child has already exited, in which case it
// returns os.ErrProcessDone, so a recycled pid is never hit. SIGSTOP returns once every thread of
// the child has stopped (as Freeze does).
func (c *Child) Signal(sig os.Signal) error { return c.proc.signal(sig) }

// Kill sends SIGKILL (which also ends a stopped process) and waits for the exit. It may be
// called again.
func (c *Child) Kill() { c.proc.kill() }

// Exited is closed when the child has exited.
func (c *Child) Exited() <-chan struct{} { return c.proc.done }

// LogContents is everything the child wrote so far.
func (c *Child) LogContents() string { return readFrom(c.LogPath, 0) }
