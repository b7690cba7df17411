package main

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The loops' system calls on their non-blocking sockets. Without -block-wait they skip the
// runtime's system-call bookkeeping (RawSyscall: no entersyscall/exitsyscall). Such a call
// cannot block, but on this paravirtualised machine a loopback write takes 10-20 µs, and a
// goroutine inside an ordinary system call that long has its P taken back by the runtime's
// monitor thread (sysmon), which then keeps polling every 20 µs: 6 % of the relay's CPU
// samples, measured with perf, with either way of waiting for events.

func (l *loop) readFD(fd int, p []byte) (int, error) {
	if !l.raw {
		return unix.Read(fd, p)
	}
	return rawIO(unix.SYS_READ, fd, p)
}

func (l *loop) writeFD(fd int, p []byte) (int, error) {
	if !l.raw {
		return unix.Write(fd, p)
	}
	return rawIO(unix.SYS_WRITE, fd, p)
}

// rawIO is read(2) or write(2) (trap) as a raw system call.
func rawIO(trap uintptr, fd int, p []byte) (int, error) {
	n, _, errno := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// pollEvents is epoll_wait with a zero timeout: it never blocks.
func (l *loop) pollEvents() (int, error) {
	if !l.raw {
		return unix.EpollWait(l.epfd, l.evbuf, 0)
	}
	n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(l.epfd), uintptr(unsafe.Pointer(unsafe.SliceData(l.evbuf))), uintptr(len(l.evbuf)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
