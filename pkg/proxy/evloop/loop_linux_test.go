package evloop

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { a.Close(); r.c.Close() })
	return a.(*net.TCPConn), r.c.(*net.TCPConn)
}

// eachWait runs f with the loops blocking in epoll_wait, then parked in the
// netpoller (setWait).
func eachWait(t *testing.T, f func(t *testing.T)) {
	for _, m := range []struct {
		name string
		mode int32
	}{{"block", waitBlock}, {"park", waitPark}} {
		t.Run(m.name, func(t *testing.T) {
			waitMode.Store(m.mode)
			defer waitMode.Store(waitAuto)
			f(t)
		})
	}
}

func newGroup(t *testing.T, n int) *Group {
	t.Helper()
	g, err := NewGroup(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

func wrap(t *testing.T, tc *net.TCPConn) *Conn {
	t.Helper()
	return Wrap(tc, nil)
}

// An attached Conn echoes what its peer sends, in order, including writes
// far larger than the socket buffers to a peer that reads late (the write
// waits in the loop for room), and the Task sees the peer's close as EOF.
func TestEchoWithBackpressure(t *testing.T) {
	eachWait(t, func(t *testing.T) {
		g := newGroup(t, 2)
		peer, srv := tcpPair(t)
		c := wrap(t, srv)
		ended := make(chan error, 1)
		if !g.Pick().Go(func(tk *Task) {
			tk.Attach(c)
			_, err := io.Copy(struct{ io.Writer }{c}, struct{ io.Reader }{c})
			ended <- err
			c.CloseWrite()
		}) {
			t.Fatal("Go refused")
		}
		want := bytes.Repeat([]byte("0123456789abcdef"), 1<<19) // 8 MiB
		go func() {
			peer.Write(want)
			peer.CloseWrite()
		}()
		time.Sleep(200 * time.Millisecond) // the echo fills both directions' buffers
		got, err := io.ReadAll(peer)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("echoed %d bytes, want %d (equal: %v)", len(got), len(want), bytes.Equal(got, want[:min(len(got), len(want))]))
		}
		if err := <-ended; err != nil {
			t.Fatalf("copy ended with %v, want EOF (nil)", err)
		}
	})
}

// A read deadline set by another goroutine, in the past or while the Task
// waits, ends the wait with a timeout; Close ends it with net.ErrClosed.
func TestWakes(t *testing.T) {
	eachWait(t, func(t *testing.T) {
		g := newGroup(t, 1)
		for _, tc := range []struct {
			name  string
			act   func(c *Conn)
			check func(error) bool
		}{
			{"deadline now", func(c *Conn) { c.SetReadDeadline(time.Now()) }, func(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }},
			{"deadline later", func(c *Conn) { c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)) }, func(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }},
			{"close", func(c *Conn) { c.Close() }, func(err error) bool { return errors.Is(err, net.ErrClosed) }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, srv := tcpPair(t)
				c := wrap(t, srv)
				ended := readInTask(g.Pick(), c)
				tc.act(c)
				err := awaitErr(t, ended)
				if !tc.check(err) {
					t.Fatalf("read ended with %v", err)
				}
				var ne net.Error
				if tc.name != "close" && (!errors.As(err, &ne) || !ne.Timeout()) {
					t.Fatalf("%v is not a net.Error timeout", err)
				}
			})
		}
	})
}

// A deadline that passes while the Task waits for another socket is still
// reported when it reads this one (the wake was not lost).
func TestDeadlinePassedMeanwhile(t *testing.T) {
	eachWait(t, func(t *testing.T) {
		g := newGroup(t, 1)
		pa, a := tcpPair(t)
		_, b := tcpPair(t)
		ca, cb := wrap(t, a), wrap(t, b)
		ended := make(chan error, 1)
		g.Pick().Go(func(tk *Task) {
			tk.Attach(ca)
			tk.Attach(cb)
			cb.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			if _, err := ca.Read(make([]byte, 1)); err != nil { // waits ~100 ms
				ended <- err
				return
			}
			_, err := cb.Read(make([]byte, 1))
			ended <- err
		})
		time.Sleep(100 * time.Millisecond)
		pa.Write([]byte("x"))
		if err := awaitErr(t, ended); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("got %v, want the deadline", err)
		}
	})
}

// readInTask starts a Task on l that attaches c and reads from it; it
// returns once the Task waits in the loop, with the channel that gets the
// read's error.
func readInTask(l *Loop, c *Conn) <-chan error {
	waiting := make(chan struct{})
	ended := make(chan error, 1)
	l.Go(func(tk *Task) {
		tk.Attach(c)
		close(waiting)
		_, err := c.Read(make([]byte, 10))
		ended <- err
	})
	<-waiting
	time.Sleep(20 * time.Millisecond) // in the loop's wait by now
	return ended
}

// awaitErr waits for a Task's error, failing the test after 5 s.
func awaitErr(t *testing.T, ended <-chan error) error {
	t.Helper()
	select {
	case err := <-ended:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("the wait did not end")
		return nil
	}
}

// A detached Task blocks on a channel without stopping its loop: another
// Task on the same loop goes on; reattached, it reads in the loop again.
func TestDetach(t *testing.T) {
	eachWait(t, func(t *testing.T) {
		g := newGroup(t, 1)
		p1, s1 := tcpPair(t)
		p2, s2 := tcpPair(t)
		c1, c2 := wrap(t, s1), wrap(t, s2)
		release := make(chan struct{})
		out := make(chan string, 4)
		l := g.Pick()
		l.Go(func(tk *Task) {
			tk.Attach(c1)
			tk.Detach()
			<-release // blocks: only this Task's goroutine waits
			tk.Reattach()
			if tk.Detached() {
				out <- "still detached"
				return
			}
			b := make([]byte, 3)
			n, err := io.ReadFull(c1, b)
			out <- "t1 " + string(b[:n]) + errString(err)
		})
		l.Go(func(tk *Task) {
			tk.Attach(c2)
			b := make([]byte, 3)
			n, err := io.ReadFull(c2, b)
			out <- "t2 " + string(b[:n]) + errString(err)
		})
		p2.Write([]byte("two"))
		select {
		case got := <-out:
			if got != "t2 two" {
				t.Fatalf("got %q", got)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the loop waited for the detached task")
		}
		close(release)
		p1.Write([]byte("one"))
		if got := <-out; got != "t1 one" {
			t.Fatalf("got %q", got)
		}
	})
}

func errString(err error) string {
	if err != nil {
		return " " + err.Error()
	}
	return ""
}

// Closing the group ends a Task's wait with ErrStopped.
func TestGroupClose(t *testing.T) {
	eachWait(t, func(t *testing.T) {
		g, err := NewGroup(1)
		if err != nil {
			t.Fatal(err)
		}
		_, srv := tcpPair(t)
		c := wrap(t, srv)
		ended := readInTask(g.Pick(), c)
		g.Close()
		if err := awaitErr(t, ended); !errors.Is(err, ErrStopped) {
			t.Fatalf("got %v", err)
		}
		if g.Pick().Go(func(*Task) {}) {
			t.Fatal("a stopped loop took a task")
		}
	})
}

// pingPong starts two Tasks on l that bounce a byte between the two ends of
// a loopback connection, one end each, until stop is closed. Each waits in
// the loop for the other's byte, and the other's write has made it ready
// by the loop's next poll, so the loop always finds an event and never
// parks. It returns how many round trips were made, once the first Task
// has ended.
func pingPong(t *testing.T, l *Loop, stop <-chan struct{}) <-chan int {
	a, b := tcpPair(t)
	ca, cb := wrap(t, a), wrap(t, b)
	trips := make(chan int, 1)
	l.Go(func(tk *Task) {
		tk.Attach(ca)
		buf := make([]byte, 1)
		for n := 0; ; n++ {
			select {
			case <-stop:
				trips <- n
				ca.CloseWrite()
				return
			default:
			}
			if _, err := ca.Write(buf); err != nil {
				trips <- -1
				return
			}
			if _, err := io.ReadFull(ca, buf); err != nil {
				trips <- -1
				return
			}
		}
	})
	l.Go(func(tk *Task) {
		tk.Attach(cb)
		_, _ = io.Copy(struct{ io.Writer }{cb}, struct{ io.Reader }{cb}) // until ca's CloseWrite
	})
	return trips
}

// A parking loop that always finds events ready yields its P now and then,
// so that the goroutines that wait for it (another loop, a login, a probe)
// do not wait for Go's 10 ms preemption; a loop that parks between its
// events never yields, nor does a blocking loop (a P is left to the others).
func TestBusyLoopYields(t *testing.T) {
	eachWait(t, testBusyLoopYields)
}

func testBusyLoopYields(t *testing.T) {
	g := newGroup(t, 2)
	busy, quiet := g.loops[0], g.loops[1]
	stop := make(chan struct{})
	trips := pingPong(t, busy, stop)

	peer, srv := tcpPair(t)
	c := wrap(t, srv)
	echoed := make(chan error, 1)
	quiet.Go(func(tk *Task) {
		tk.Attach(c)
		buf := make([]byte, 1)
		for range 20 {
			if _, err := io.ReadFull(c, buf); err != nil {
				echoed <- err
				return
			}
			if _, err := c.Write(buf); err != nil {
				echoed <- err
				return
			}
		}
		echoed <- nil
	})
	for range 20 {
		time.Sleep(5 * time.Millisecond) // the quiet loop parks meanwhile
		if _, err := peer.Write([]byte("q")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(peer, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := awaitErr(t, echoed); err != nil {
		t.Fatal(err)
	}
	close(stop)
	n := <-trips
	g.Close() // the loops' counters are read after their goroutines end
	if n <= 0 {
		t.Fatalf("the busy loop's task made %d round trips", n)
	}
	if block := waitMode.Load() == waitBlock; block != (busy.yields == 0) {
		t.Fatalf("blocking loop: %v; the busy loop yielded %d times in %d round trips", block, busy.yields, n)
	}
	// Each of the quiet loop's 20 events comes after it parked: were the
	// busy time not counted from the park, each would find more than
	// busySlice gone and yield. (It may yield once or twice on a loaded
	// machine, when its thread is descheduled between two of its polls.)
	if quiet.yields >= 10 {
		t.Fatalf("the quiet loop yielded %d times for 20 events", quiet.yields)
	}
	t.Logf("%d round trips, %d yields", n, busy.yields)
}
