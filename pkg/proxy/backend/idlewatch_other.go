//go:build !linux

package backend

import "net"

// Without epoll an idle session does not watch its backend; it learns of a
// closed backend at its next command.
const idleWatchSupported = false

func pollerAdd(net.Conn, *idleWatch, uint32) error { return errNoPoller }

func pollerRemove(net.Conn, *idleWatch, uint32) {}

func pollerLen() int { return 0 }

func pollerHas(*idleWatch) bool { return false }
