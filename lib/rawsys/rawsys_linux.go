package rawsys

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Read is read(2) of fd into p.
func Read(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, errno := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return int(n), errno
}

// Write is write(2) of p to fd.
func Write(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, errno := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return int(n), errno
}

// EpollPoll is epoll_wait(2) of epfd into events with a zero timeout: it
// never blocks.
func EpollPoll(epfd int, events []unix.EpollEvent) (int, syscall.Errno) {
	return epollWait(epfd, events, 0)
}

// EpollBlock is epoll_wait(2) of epfd into events without a timeout: it
// blocks until an event or a signal (EINTR) as a raw call, so the calling
// goroutine keeps its P meanwhile and the runtime sees it running. Its
// monitor does not take the P back, and interrupts the wait with a
// preemption signal when the goroutine has run 10 ms or the world must
// stop. Only pkg/proxy/evloop calls it, on a loop that has a P to spare.
func EpollBlock(epfd int, events []unix.EpollEvent) (int, syscall.Errno) {
	return epollWait(epfd, events, -1)
}

func epollWait(epfd int, events []unix.EpollEvent, msec int) (int, syscall.Errno) {
	n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(unsafe.SliceData(events))), uintptr(len(events)), uintptr(msec), 0, 0)
	return int(n), errno
}
