//go:build unix

package backend

import (
	"net"
	"syscall"
)

const peekSupported = true

// waitReadable parks until conn has data or an end (EOF, reset) to report,
// without consuming anything. It returns false when interrupted by a read
// deadline or when the connection cannot be watched.
func waitReadable(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var buf [1]byte
	readable := false
	err = rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if err == syscall.EAGAIN || err == syscall.EINTR {
			return false // nothing yet: park in the netpoller
		}
		// Data, EOF (n == 0) or a socket error such as a reset.
		readable = true
		return true
	})
	return err == nil && readable
}
