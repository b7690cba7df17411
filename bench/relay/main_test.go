package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

// variant is one way to run the relay.
type variant struct {
	name, mode string
	block      bool // -block-wait
}

// variants are the relay's modes this platform has, the loops both parking in Go's
// netpoller and blocking in epoll_wait.
func variants() []variant {
	v := []variant{{name: "netpoll", mode: "netpoll"}}
	if runtime.GOOS == "linux" {
		v = append(v, variant{name: "epoll", mode: "epoll"}, variant{name: "epoll-block-wait", mode: "epoll", block: true},
			variant{name: "coro", mode: "coro"}, variant{name: "coro-block-wait", mode: "coro", block: true})
	}
	return v
}

// server starts a loopback listener whose every connection is handled by serve.
func server(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return ln.Addr().String()
}

func echo(c net.Conn) { io.Copy(c, c) }

func startRelay(t *testing.T, v variant, backend string, loops int) relay {
	t.Helper()
	r, err := start(v.mode, "127.0.0.1:0", backend, epollOptions{loops: loops, blockingWait: v.block})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}

// TestRelayRoundTrips sends requests of every size class through the relay to an echo
// server, from many connections at once, and checks every byte that comes back.
func TestRelayRoundTrips(t *testing.T) {
	for _, v := range variants() {
		t.Run(v.name, func(t *testing.T) {
			r := startRelay(t, v, server(t, echo), 2)
			var wg sync.WaitGroup
			errs := make(chan error, 20)
			for i := range 20 {
				c := dial(t, r.Addr())
				wg.Add(1)
				go func() {
					defer wg.Done()
					for _, n := range []int{1, 4, 100, 16 << 10, 16<<10 + 1, 64<<10 + 7, 1000 + i} {
						req := make([]byte, n)
						rand.Read(req)
						if _, err := c.Write(req); err != nil {
							errs <- err
							return
						}
						got := make([]byte, n)
						if _, err := io.ReadFull(c, got); err != nil {
							errs <- err
							return
						}
						if !bytes.Equal(got, req) {
							errs <- errors.New("echoed bytes differ")
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// TestRelayBackpressure writes 8 MiB before reading any of the echo, so that the relay's
// writes to the client fill its socket buffers and must wait (the epoll loop's pending
// buffer and paused reads); every byte must still arrive in order.
func TestRelayBackpressure(t *testing.T) {
	for _, v := range variants() {
		t.Run(v.name, func(t *testing.T) {
			r := startRelay(t, v, server(t, echo), 1)
			c := dial(t, r.Addr())
			req := make([]byte, 8<<20)
			rand.Read(req)
			werr := make(chan error, 1)
			go func() {
				_, err := c.Write(req)
				werr <- err
			}()
			time.Sleep(300 * time.Millisecond) // let every buffer on the way fill up
			got := make([]byte, len(req))
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatal(err)
			}
			if err := <-werr; err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, req) {
				t.Fatal("echoed bytes differ")
			}
		})
	}
}

// TestRelayServerSpeaksFirstThenCloses: what the backend writes before it closes reaches
// the client (as a MySQL greeting does), and then the client sees the connection end.
func TestRelayServerSpeaksFirstThenCloses(t *testing.T) {
	for _, v := range variants() {
		t.Run(v.name, func(t *testing.T) {
			r := startRelay(t, v, server(t, func(c net.Conn) { c.Write([]byte("hello")) }), 1)
			c := dial(t, r.Addr())
			got, err := io.ReadAll(c)
			if string(got) != "hello" {
				t.Fatalf("read %q (%v), want hello then EOF", got, err)
			}
		})
	}
}

// TestRelayBackendDown: a client of a relay whose backend refuses connections is closed.
func TestRelayBackendDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	for _, v := range variants() {
		t.Run(v.name, func(t *testing.T) {
			r := startRelay(t, v, dead, 1)
			c := dial(t, r.Addr())
			got, err := io.ReadAll(c)
			if len(got) != 0 || (err != nil && !errors.Is(err, io.EOF) && !isReset(err)) {
				t.Fatalf("read %q, %v; want the connection closed", got, err)
			}
		})
	}
}

// TestEpollRelayCloseEndsPairs: Close of the epoll relay closes the sockets it relays.
func TestEpollRelayCloseEndsPairs(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("epoll mode is Linux only")
	}
	r, err := start("epoll", "127.0.0.1:0", server(t, echo), epollOptions{loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, r.Addr())
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("read %d, %v after Close; want the connection closed", n, err)
	}
	if _, err := net.DialTimeout("tcp", r.Addr(), time.Second); err == nil {
		t.Fatal("the relay still accepts after Close")
	}
}

func TestStartRejectsBadFlags(t *testing.T) {
	if _, err := start("splice", "127.0.0.1:0", "127.0.0.1:1", epollOptions{loops: 1}); err == nil {
		t.Error("unknown mode accepted")
	}
	if _, err := start("epoll", "127.0.0.1:0", "127.0.0.1:1", epollOptions{}); err == nil {
		t.Error("-loops 0 accepted")
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op)
}
