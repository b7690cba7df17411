package evloop

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// epollSets lists this process's epoll descriptors other than skip, each
// with what it watches: the inodes of the files registered with it and
// whether one of them is itself an epoll descriptor (from /proc/self).
func epollSets(t *testing.T, skip map[int]bool) map[int]epollSet {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	sets := map[int]epollSet{}
	for _, e := range ents {
		fd, _ := strconv.Atoi(e.Name())
		if link, _ := os.Readlink("/proc/self/fd/" + e.Name()); link != "anon_inode:[eventpoll]" || skip[fd] {
			continue
		}
		f, err := os.Open("/proc/self/fdinfo/" + e.Name())
		if err != nil {
			continue // closed meanwhile
		}
		set := epollSet{inodes: map[uint64]bool{}}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// tfd:        7 events:       19 data: ...  pos:0 ino:5f3 sdev:9
			fields := strings.Fields(sc.Text())
			if len(fields) < 2 || fields[0] != "tfd:" {
				continue
			}
			for _, fl := range fields {
				if ino, ok := strings.CutPrefix(fl, "ino:"); ok {
					n, _ := strconv.ParseUint(ino, 16, 64)
					set.inodes[n] = true
				}
			}
			if link, _ := os.Readlink("/proc/self/fd/" + fields[1]); link == "anon_inode:[eventpoll]" {
				set.epoll = true
			}
		}
		f.Close()
		sets[fd] = set
	}
	return sets
}

type epollSet struct {
	inodes map[uint64]bool
	epoll  bool // an epoll descriptor is registered with it
}

func inode(t *testing.T, fd int) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func tcpFD(t *testing.T, tc *net.TCPConn) int {
	t.Helper()
	rc, err := tc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}

// An attached Conn's socket is in its loop's epoll set and in no other: not
// in the runtime's poller, whose idle thread would wake for each of its
// packets. A blocking loop's own descriptor is not there either; a parking
// loop's is (it parks there).
func TestAttachedSocketLeavesRuntime(t *testing.T) {
	eachWait(t, func(t *testing.T) {
		g := newGroup(t, 1)
		l := g.Pick()
		_, srv := tcpPair(t)
		ino := inode(t, tcpFD(t, srv))
		c := wrap(t, srv)
		skip := map[int]bool{l.epfd: true} // and its duplicate, when it parks
		if l.epr != nil {
			l.epr.Control(func(fd uintptr) { skip[int(fd)] = true }) // not Fd: it would make epf blocking
		}
		inRuntime := func() bool {
			for _, s := range epollSets(t, skip) {
				if s.inodes[ino] {
					return true
				}
			}
			return false
		}
		if !inRuntime() {
			t.Fatal("a new connection's socket is not in the runtime's poller: the check sees nothing")
		}
		attached := make(chan struct{})
		l.Go(func(tk *Task) {
			if tk.Attach(c) {
				close(attached)
			}
			_, _ = c.Read(make([]byte, 1)) // until the cleanup closes the peer
		})
		select {
		case <-attached:
		case <-time.After(5 * time.Second):
			t.Fatal("not attached")
		}
		if inRuntime() {
			t.Fatal("the attached socket is still in the runtime's poller")
		}
		if !epollSets(t, nil)[l.epfd].inodes[ino] {
			t.Fatal("the attached socket is not in its loop's epoll set")
		}
		loopInRuntime := false
		for _, s := range epollSets(t, skip) {
			loopInRuntime = loopInRuntime || s.epoll
		}
		if block := waitMode.Load() == waitBlock; loopInRuntime == block {
			t.Fatalf("blocking loop: %v; its epoll descriptor in the runtime's poller: %v", block, loopInRuntime)
		}
	})
}

// Off the loop a bare Conn reads what is there without leaving it; a read
// that must wait thaws it and waits on the runtime's poller, with the read
// deadline; attached again it is bare again and reads in the loop.
func TestThawOffTheLoop(t *testing.T) {
	eachWait(t, func(t *testing.T) {
		g := newGroup(t, 1)
		peer, srv := tcpPair(t)
		c := wrap(t, srv)
		steps := make(chan string, 8)
		next := make(chan struct{})
		g.Pick().Go(func(tk *Task) {
			buf := make([]byte, 1)
			read := func(where string) {
				n, err := c.Read(buf)
				steps <- where + " " + string(buf[:n]) + errString(err) + " frozen=" + strconv.FormatBool(c.Frozen())
			}
			tk.Attach(c)
			read("loop")
			tk.Detach()
			<-next
			read("off") // "b" was written before: no thaw
			c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
			_, err := c.Read(buf)
			var ne net.Error
			steps <- "deadline timeout=" + strconv.FormatBool(errors.As(err, &ne) && ne.Timeout()) + " frozen=" + strconv.FormatBool(c.Frozen())
			c.SetReadDeadline(time.Time{})
			read("off") // waits for "c"
			tk.Reattach()
			steps <- "reattached frozen=" + strconv.FormatBool(c.Frozen())
			read("loop")
		})
		expect := func(want string) {
			t.Helper()
			select {
			case got := <-steps:
				if got != want {
					t.Fatalf("got %q, want %q", got, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("no step; want %q", want)
			}
		}
		peer.Write([]byte("a"))
		expect("loop a frozen=true")
		peer.Write([]byte("b"))
		time.Sleep(20 * time.Millisecond)
		close(next)
		expect("off b frozen=true")
		expect("deadline timeout=true frozen=false")
		time.Sleep(20 * time.Millisecond)
		peer.Write([]byte("c"))
		expect("off c frozen=false")
		expect("reattached frozen=true")
		peer.Write([]byte("d"))
		expect("loop d frozen=true")
	})
}

// Close from another goroutine while the Task waits closes the Conn's own
// descriptor (once: no call was in flight), and later calls fail with
// net.ErrClosed.
func TestCloseClosesTheDescriptor(t *testing.T) {
	eachWait(t, func(t *testing.T) {
		g := newGroup(t, 1)
		_, srv := tcpPair(t)
		c := wrap(t, srv)
		ended := readInTask(g.Pick(), c)
		fd := int(c.sock)
		if fd < 0 {
			t.Fatal("attached without a descriptor of its own")
		}
		ino := inode(t, fd)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if err := awaitErr(t, ended); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("the wait ended with %v", err)
		}
		g.Close() // the Task has let go of c
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err == nil && st.Ino == ino {
			t.Fatal("the descriptor is still open")
		}
		if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("a write after Close: %v", err)
		}
		if err := c.Close(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("a second Close: %v", err)
		}
		if _, err := io.ReadAll(c); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("a read after Close: %v", err)
		}
	})
}

// A loop blocked in epoll_wait keeps its P as a running goroutine would
// (rawsys.EpollBlock), so the runtime must be able to take it back: the
// world stops for a collection and for a GOMAXPROCS change, and with its P
// the only one, other goroutines still run (the runtime's preemption
// signal interrupts the wait).
func TestBlockedLoopYieldsToTheRuntime(t *testing.T) {
	waitMode.Store(waitBlock)
	defer waitMode.Store(waitAuto)
	g := newGroup(t, 1)
	_, srv := tcpPair(t)
	ended := readInTask(g.Pick(), wrap(t, srv)) // the loop blocks now
	within := func(what string, f func()) {
		t.Helper()
		done := make(chan struct{})
		go func() { f(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s did not finish beside a blocked loop", what)
		}
	}
	within("a collection", runtime.GC)
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	within("a goroutine on the only P", func() {
		for range 20 {
			time.Sleep(time.Millisecond)
		}
	})
	select {
	case err := <-ended:
		t.Fatalf("the Task's read ended: %v", err)
	default:
	}
}
