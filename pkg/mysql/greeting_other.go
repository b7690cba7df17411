//go:build !linux

package mysql

import (
	"errors"
	"net/netip"
	"time"
)

// quickGreetings: a GreetingSet's system calls (greeting_linux.go) are
// Linux only; GreetingAddr takes no address elsewhere.
const quickGreetings = false

type greetingSys struct{}

// NewGreetingSet fails: see quickGreetings.
func NewGreetingSet() (*GreetingSet, error) { return nil, errors.ErrUnsupported }

func (s *GreetingSet) Close() error { return nil }

func (sys *greetingSys) setDeadline(time.Time) error { return errors.ErrUnsupported }

func (s *GreetingSet) start(netip.AddrPort) (*GreetingProbe, error) {
	return nil, errors.ErrUnsupported
}

func (g *GreetingProbe) wait() ([]byte, error) { return nil, errors.ErrUnsupported }
func (g *GreetingProbe) close()                {}
func (g *GreetingProbe) lingerOff()            {}
func (g *GreetingProbe) connected() bool       { return false }
