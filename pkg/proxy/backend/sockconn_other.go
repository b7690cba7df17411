//go:build !linux

package backend

import "net"

// Sessions do not park elsewhere than Linux (idlewatch_other.go): their
// connections are not frozen.

func freezable(tc *net.TCPConn) net.Conn { return tc }

func freezeConn(net.Conn) bool { return false }

func isFrozen(net.Conn) bool { return false }

func canFreeze(net.Conn) bool { return false }

func cork(net.Conn) {}
