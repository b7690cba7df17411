// Command connfloor measures what one open net.TCPConn costs a Go process
// before any program state: the memory every Switchyard session pays twice
// (its client and its backend connection), whatever the session keeps.
//
// It opens -n loopback connections to itself (both ends in this process),
// collects garbage, and prints the growth of the runtime's memory classes
// per connection: the Go heap (net's netFD, the TCPConn and the four
// addresses), the off-heap runtime memory (the netpoller's pollDesc, padded
// to 512 bytes, and the finalizer record of the netFD) and the GC's
// metadata.
//
//	go run ./bench/connfloor -n 4000
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
)

func main() {
	n := flag.Int("n", 4000, "connections to open (each has two ends here)")
	flag.Parse()
	if err := run(*n); err != nil {
		fmt.Fprintln(os.Stderr, "connfloor:", err)
		os.Exit(1)
	}
}

func run(n int) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer func() { _ = ln.Close() }()
	// The slice that holds the connections is allocated first, so that only
	// the connections themselves grow the heap below.
	conns := make([]net.Conn, 0, 2*n)
	before := sample()
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return fmt.Errorf("after %d connections: %w", len(conns)/2, err)
		}
		s, err := ln.Accept()
		if err != nil {
			return err
		}
		conns = append(conns, c, s)
	}
	after := sample()
	per := func(a, b uint64) float64 { return float64(int64(b)-int64(a)) / float64(len(conns)) }
	fmt.Printf("%d open TCP connections (%d loopback pairs), %s\n", len(conns), n, runtime.Version())
	fmt.Printf("per connection: heap %.0f B, off-heap runtime %.0f B, GC metadata %.0f B; %.0f B in all\n",
		per(before.heap, after.heap), per(before.other, after.other), per(before.gc, after.gc),
		per(before.heap+before.other+before.gc, after.heap+after.other+after.gc))
	for _, c := range conns {
		_ = c.Close()
	}
	return nil
}

type memSample struct{ heap, other, gc uint64 }

func sample() memSample {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{heap: ms.HeapAlloc, other: ms.OtherSys, gc: ms.GCSys}
}
