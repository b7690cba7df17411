//go:build !linux

package mysql

import (
	"context"
	"net"
)

// readGreetingDirect is Linux-only: elsewhere ReadGreeting always dials through net.Dialer.
func readGreetingDirect(context.Context, *net.Dialer, string) ([]byte, bool, error) {
	return nil, false, nil
}
