//go:build !linux

package mysql

import "net"

// newSysWriter returns conn: raw writes (syswrite_linux.go) are Linux only.
func newSysWriter(conn net.Conn) writeTarget { return conn }
