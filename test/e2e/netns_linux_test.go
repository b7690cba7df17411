package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A lossy link for fault scenarios, made of kernel parts the test sets up
// itself and removes: two network namespaces of its own joined by a veth
// pair (10.213.0.1 and 10.213.0.2, addresses that exist only inside those
// two namespaces), with nftables rules inside them that drop a share of
// the packets, and a delay added by the test's userspace splice (ha.md
// section 7: loss by the firewall, delay by a userspace proxy; netem is
// not in every kernel, this machine's included).
//
//	client (root ns) -> 127.0.0.1:entry (test) -> socket in ns C
//	  -> veth C/S, nft drop -> socket in ns S -> target (root ns, loopback)
//
// The test process opens the sockets inside the namespaces itself (on a
// thread switched there with setns and back), so no process other than the test runs in
// them, and nothing outside them gets an address or a rule.

const (
	nsLinkClientIP = "10.213.0.1"
	nsLinkServerIP = "10.213.0.2"
)

// requireNetns skips (with the reason) where the link cannot be built: not
// root, no ip or nft. make test fails on any skip, so a machine that can
// run these scenarios cannot pass without running them.
func requireNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("link-fault scenarios need root (network namespaces, nftables); run as root")
	}
	for _, bin := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("link-fault scenarios need %s (Debian: iproute2, nftables; scripts/install-deps.sh installs them): %v", bin, err)
		}
	}
}

var nsLinkSeq atomic.Int64

// nsLink is one lossy link to target.
type nsLink struct {
	t              *testing.T
	client, server string // namespace names
	target         string
	entry, inner   net.Listener
	delay          atomic.Int64 // per chunk, nanoseconds
	bytes          atomic.Int64 // carried, both directions
	mu             sync.Mutex
	conns          map[net.Conn]struct{}
	wg             sync.WaitGroup
}

func runIP(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %v: %v: %s", args, err, bytes.TrimSpace(out))
	}
	return nil
}

// inNetns runs f on a thread switched into the named namespace, then
// switches the thread back before it runs anything else. The thread must
// survive: testenv starts its children with Pdeathsig, which the kernel
// sends when the thread that forked them exits, and this thread may have
// forked a proxy or etcd earlier. If switching back fails, the thread is
// never given back (it ends with its goroutine) and the test fails.
func inNetns(name string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := syscall.Open("/proc/thread-self/ns/net", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open this thread's netns: %w", err)
			return
		}
		defer syscall.Close(orig)
		fd, err := syscall.Open("/var/run/netns/"+name, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open netns %s: %w", name, err)
			return
		}
		defer syscall.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", name, err)
			return
		}
		ferr := f()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("switching a thread back from netns %s: %w (the thread is discarded)", name, err)
			return // still locked: the runtime ends the thread with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// newNSLink builds the namespaces and the link to target (host:port on
// loopback) and returns it with no fault; everything is removed when the
// test ends.
func newNSLink(t *testing.T, target string) *nsLink {
	t.Helper()
	requireNetns(t)
	n := nsLinkSeq.Add(1)
	l := &nsLink{
		t:      t,
		client: fmt.Sprintf("sy13-%d-%dc", os.Getpid(), n),
		server: fmt.Sprintf("sy13-%d-%ds", os.Getpid(), n),
		target: target,
		conns:  map[net.Conn]struct{}{},
	}
	for _, ns := range []string{l.client, l.server} {
		if err := runIP("netns", "add", ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = runIP("netns", "del", ns) })
	}
	for _, args := range [][]string{
		{"-n", l.client, "link", "set", "lo", "up"},
		{"-n", l.server, "link", "set", "lo", "up"},
		{"-n", l.client, "link", "add", "vc", "type", "veth", "peer", "name", "vs", "netns", l.server},
		{"-n", l.client, "addr", "add", nsLinkClientIP + "/30", "dev", "vc"},
		{"-n", l.server, "addr", "add", nsLinkServerIP + "/30", "dev", "vs"},
		{"-n", l.client, "link", "set", "vc", "up"},
		{"-n", l.server, "link", "set", "vs", "up"},
	} {
		if err := runIP(args...); err != nil {
			t.Fatal(err)
		}
	}
	if err := inNetns(l.server, func() (err error) {
		l.inner, err = net.Listen("tcp", nsLinkServerIP+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var err error
	if l.entry, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	l.wg.Add(2)
	go l.serveInner()
	go l.serveEntry()
	t.Cleanup(l.close)
	return l
}

// Addr is where clients connect (root namespace, loopback).
func (l *nsLink) Addr() string { return l.entry.Addr().String() }

// Bytes is how much the link has carried so far.
func (l *nsLink) Bytes() int64 { return l.bytes.Load() }

// SetFault drops lossPct percent of the packets in each direction (100: a
// cut) and delays every chunk by delay; SetFault(0, 0) heals it.
func (l *nsLink) SetFault(lossPct int, delay time.Duration) {
	l.t.Helper()
	l.delay.Store(int64(delay))
	for _, side := range []struct{ ns, peer string }{{l.client, nsLinkServerIP}, {l.server, nsLinkClientIP}} {
		rules := "flush ruleset\n"
		if lossPct > 0 {
			match := "drop"
			if lossPct < 100 {
				match = fmt.Sprintf("numgen random mod 100 < %d drop", lossPct)
			}
			rules += fmt.Sprintf("table inet sy13 {\n chain out {\n  type filter hook output priority 0; policy accept;\n  ip daddr %s %s\n }\n}\n", side.peer, match)
		}
		cmd := exec.Command("ip", "netns", "exec", side.ns, "nft", "-f", "-")
		cmd.Stdin = bytes.NewBufferString(rules)
		if out, err := cmd.CombinedOutput(); err != nil {
			l.t.Fatalf("nft in %s: %v: %s", side.ns, err, out)
		}
	}
}

func (l *nsLink) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns == nil {
		_ = c.Close()
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *nsLink) serveInner() {
	defer l.wg.Done()
	for {
		c, err := l.inner.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout("tcp", l.target, 5*time.Second)
		if err != nil {
			_ = c.Close()
			continue
		}
		l.splice(c, up, false)
	}
}

func (l *nsLink) serveEntry() {
	defer l.wg.Done()
	for {
		c, err := l.entry.Accept()
		if err != nil {
			return
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			var in net.Conn
			err := inNetns(l.client, func() (err error) {
				in, err = net.DialTimeout("tcp", l.inner.Addr().String(), 10*time.Second)
				return err
			})
			if err != nil {
				_ = c.Close()
				return
			}
			l.splice(c, in, true)
		}()
	}
}

// splice copies both ways; delayed adds the link's delay to every chunk.
func (l *nsLink) splice(a, b net.Conn, delayed bool) {
	if !l.track(a) || !l.track(b) {
		_ = a.Close()
		_ = b.Close()
		return
	}
	pipe := func(dst, src net.Conn) {
		defer l.wg.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if d := time.Duration(l.delay.Load()); delayed && d > 0 {
					time.Sleep(d)
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					err = werr
				}
				l.bytes.Add(int64(n))
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					if tc, ok := dst.(*net.TCPConn); ok {
						_ = tc.CloseWrite()
					}
				} else {
					_ = dst.Close()
					_ = src.Close()
				}
				return
			}
		}
	}
	l.wg.Add(2)
	go pipe(a, b)
	go pipe(b, a)
}

func (l *nsLink) close() {
	_ = l.entry.Close()
	_ = l.inner.Close()
	l.mu.Lock()
	for c := range l.conns {
		_ = c.Close()
	}
	l.conns = nil
	l.mu.Unlock()
	l.wg.Wait()
}
