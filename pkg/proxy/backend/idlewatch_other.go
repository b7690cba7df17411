//go:build !linux

package backend

import "net"

// Without epoll an idle session does not watch its backend; it learns of a
// closed backend at its next command.
const idleWatchSupported = false

type pollTarget interface {
	readable(gen uint32)
}

func pollerAdd(net.Conn, pollTarget, uint32) (int32, error) { return -1, errNoPoller }

func pollerRemove(net.Conn, int32, pollTarget, uint32) bool { return false }

func pollerForgetConn(net.Conn) {}

func pollerLen() int { return 0 }

func pollerHas(int32, pollTarget) bool { return false }
