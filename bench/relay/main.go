// Command relay is a protocol-blind TCP relay, for measuring what a Go process can reach
// against HAProxy's TCP mode before any MySQL work is done. It is not part of the proxy:
// `make bench` runs it beside HAProxy and Switchyard when BENCH_TARGETS names it.
//
// Two modes:
//   - netpoll: a goroutine per direction, each reading into its own buffer and writing what
//     it read, over net.Conn (Go's netpoller parks a goroutine at every read that finds
//     nothing). This is how a Go proxy is written by default.
//   - epoll: one locked OS thread per loop running epoll_wait over non-blocking sockets it
//     owns, reading only what epoll reported readable and writing it at once, HAProxy's
//     design (Linux only). No goroutine is parked or woken per packet.
//   - coro: the same loop, but each direction is blocking-style code (read, write what was
//     read) in a coroutine (iter.Pull) that the loop resumes when its socket is ready
//     (Linux only): the shape of the netpoll mode, driven the way the epoll mode is.
//
// Usage: relay -listen 127.0.0.1:PORT -backend 127.0.0.1:PORT [-mode epoll|coro|netpoll] [-loops N]
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to accept clients on")
	backend := flag.String("backend", "", "address to relay each client to")
	mode := flag.String("mode", "epoll", "epoll, coro or netpoll")
	loops := flag.Int("loops", 1, "epoll and coro modes: event loops (HAProxy's nbthread)")
	blockWait := flag.Bool("block-wait", false, "epoll and coro modes: block the loop's thread in epoll_wait, and make every system call an ordinary one, instead of parking in Go's netpoller between batches and reading and writing with raw system calls")
	flag.Parse()
	if *backend == "" {
		log.Fatal("relay: -backend is required")
	}
	r, err := start(*mode, *listen, *backend, epollOptions{loops: *loops, blockingWait: *blockWait})
	if err != nil {
		log.Fatalf("relay: %v", err)
	}
	fmt.Printf("LISTENING %s\n", r.Addr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	r.Close()
}

// relay is a running relay of either mode.
type relay interface {
	Addr() string
	Close()
}

// start starts a relay; o.coro is set from the mode.
func start(mode, listen, backend string, o epollOptions) (relay, error) {
	switch mode {
	case "netpoll":
		return startNetpoll(listen, backend)
	case "epoll", "coro":
		if o.loops < 1 {
			return nil, fmt.Errorf("-loops must be at least 1, got %d", o.loops)
		}
		o.coro = mode == "coro"
		return startEpoll(listen, backend, o)
	}
	return nil, fmt.Errorf("unknown -mode %q (want epoll, coro or netpoll)", mode)
}

// epollOptions are the epoll and coro modes' settings.
type epollOptions struct {
	loops        int  // event loops
	coro         bool // run each direction as a coroutine
	blockingWait bool // block in epoll_wait, ordinary system calls (else: netpoller, raw calls)
}

// netpollRelay is the goroutine-per-direction relay.
type netpollRelay struct {
	ln      net.Listener
	backend string
}

func startNetpoll(listen, backend string) (*netpollRelay, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	r := &netpollRelay{ln: ln, backend: backend}
	go r.accept()
	return r, nil
}

func (r *netpollRelay) Addr() string { return r.ln.Addr().String() }
func (r *netpollRelay) Close()       { r.ln.Close() }

func (r *netpollRelay) accept() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				log.Printf("relay: accept: %v", err)
			}
			return
		}
		go r.serve(c.(*net.TCPConn))
	}
}

func (r *netpollRelay) serve(client *net.TCPConn) {
	server, err := net.Dial("tcp", r.backend)
	if err != nil {
		client.Close()
		return
	}
	done := make(chan struct{})
	go func() {
		pipe(server.(*net.TCPConn), client)
		close(done)
	}()
	pipe(client, server.(*net.TCPConn))
	<-done
	client.Close()
	server.Close()
}

// pipe copies src to dst until either fails, then half-closes dst's write side so that EOF
// reaches the other end. It reads into a buffer of its own rather than io.Copy, whose
// TCP-to-TCP path is splice(2) through a pipe: more system calls for small packets, and not
// how a protocol-aware proxy reads.
func pipe(dst, src *net.TCPConn) {
	buf := make([]byte, 16<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				src.CloseRead()
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				src.CloseRead()
			}
			dst.CloseWrite()
			return
		}
	}
}
