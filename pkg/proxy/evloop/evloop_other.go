//go:build !linux

package evloop

import (
	"errors"
	"io"
	"net"
)

// Supported reports whether this platform has event loops.
const Supported = false

// ErrStopped is what a Task's socket wait returns once its loop stopped.
var ErrStopped = errors.New("event loop stopped")

var errUnsupported = errors.New("event loops need Linux")

// Group is a set of loops (none here).
type Group struct{}

// NewGroup fails: only Linux has loops.
func NewGroup(int) (*Group, error) { return nil, errUnsupported }

// Pick is never reached (NewGroup fails).
func (g *Group) Pick() *Loop { return nil }

// Len is 0.
func (g *Group) Len() int { return 0 }

// Close does nothing.
func (g *Group) Close() {}

// Loop is an event loop (none here).
type Loop struct{}

// Go refuses.
func (l *Loop) Go(func(*Task)) bool { return false }

// Task is a coroutine on a loop (none here).
type Task struct{}

// Attach refuses.
func (t *Task) Attach(*Conn) bool { return false }

// Release does nothing.
func (t *Task) Release(*Conn) {}

// Detach does nothing.
func (t *Task) Detach() {}

// Reattach does nothing.
func (t *Task) Reattach() {}

// Detached is true: code runs on goroutines.
func (t *Task) Detached() bool { return true }

// Conn is its TCPConn here.
type Conn struct{ *net.TCPConn }

// Wrap is never reached (NewGroup fails).
func Wrap(tc *net.TCPConn, _ func(net.Conn) io.Writer) *Conn { return &Conn{tc} }
