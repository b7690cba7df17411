//go:build !linux

package mysql

import (
	"errors"
	"net/netip"
)

// quickGreetings: StartGreeting's system calls (greeting_linux.go) are
// Linux only; GreetingAddr takes no address elsewhere.
const quickGreetings = false

func startGreeting(netip.AddrPort) (*GreetingProbe, error) { return nil, errors.ErrUnsupported }

func (g *GreetingProbe) readPacket() ([]byte, error) { return nil, errors.ErrUnsupported }
func (g *GreetingProbe) lingerOff()                  {}
func (g *GreetingProbe) connected() bool             { return false }
