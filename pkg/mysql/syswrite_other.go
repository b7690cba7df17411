//go:build !linux

package mysql

import (
	"io"
	"net"
)

// newSysWriter returns conn: raw writes (syswrite_linux.go) are Linux only.
func newSysWriter(conn net.Conn) io.Writer { return conn }
