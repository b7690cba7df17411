package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Freeze stops process pid with SIGSTOP and returns once every one of its
// threads is stopped. kill(2) only starts the stop of a multi-threaded
// process: one thread takes the signal and then stops the others, and on a
// loaded machine a thread can go on working for milliseconds meanwhile (a
// mariadbd connection thread once answered a statement sent after the
// kill). A test that needs the process hung from a given moment on uses
// this, not the bare signal.
func Freeze(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("testenv: SIGSTOP %d: %w", pid, err)
	}
	return waitStopped(pid)
}

// waitStopped returns once every thread of pid, sent SIGSTOP, has stopped.
func waitStopped(pid int) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		running, err := runningThreads(pid)
		if err != nil {
			return err
		}
		if running == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testenv: %d threads of process %d still not stopped 10 s after SIGSTOP", running, pid)
		}
		time.Sleep(time.Millisecond)
	}
}

// runningThreads counts the threads of pid that are neither stopped ('T',
// or 't' under a tracer) nor dead ('Z', 'X': a process that exited meanwhile
// answers nothing either) in /proc.
func runningThreads(pid int) (int, error) {
	stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(stats) == 0 {
		return 0, fmt.Errorf("testenv: no threads of process %d in /proc (%v)", pid, err)
	}
	n := 0
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread exited
		}
		// The state follows the command name, which is in parentheses and
		// may itself contain spaces and parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) {
			return 0, fmt.Errorf("testenv: unexpected %s: %q", p, s)
		}
		if st := s[i+2]; st != 'T' && st != 't' && st != 'Z' && st != 'X' {
			n++
		}
	}
	return n, nil
}
