package main

import (
	"syscall"

	"github.com/switchyard-db/switchyard/lib/rawsys"
	"golang.org/x/sys/unix"
)

// The loops' system calls on their non-blocking sockets. Without -block-wait they are raw
// system calls (lib/rawsys, which says why); with it, ordinary ones.

func (l *loop) readFD(fd int, p []byte) (int, error) {
	if !l.raw {
		return unix.Read(fd, p)
	}
	return result(rawsys.Read(uintptr(fd), p))
}

func (l *loop) writeFD(fd int, p []byte) (int, error) {
	if !l.raw {
		return unix.Write(fd, p)
	}
	return result(rawsys.Write(uintptr(fd), p))
}

// pollEvents is epoll_wait with a zero timeout: it never blocks.
func (l *loop) pollEvents() (int, error) {
	if !l.raw {
		return unix.EpollWait(l.epfd, l.evbuf, 0)
	}
	return result(rawsys.EpollPoll(l.epfd, l.evbuf))
}

// result is a raw call's outcome as unix.Read's: an error, or the count.
func result(n int, errno syscall.Errno) (int, error) {
	if errno != 0 {
		return 0, errno
	}
	return n, nil
}
