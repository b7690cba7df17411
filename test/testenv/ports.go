package testenv

import (
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// FreePort returns a TCP port on 127.0.0.1 that is free and reserved for this process: no
// other caller of FreePort, in this process or another, gets it while this process runs.
//
// Picking a port by listening on port 0 and closing the listener is racy in two ways, and both
// failed CI runs ("bind: address already in use"): the kernel hands the same port to the next
// port-0 listen or outgoing connection of any process, and `go test` runs packages' test
// binaries side by side. So FreePort picks below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), where the kernel never assigns a port by itself, and holds
// a lock file per port for the life of the process. A server that is not a test's own (an
// unrelated listener) can still hold a port; FreePort skips the ones it finds bound, and
// servers started on a port should still treat a bind failure as retryable (StartMariaDB does).
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("testenv: pick a free port: %v", err)
	}
	return port
}

// PickFreePort is FreePort for programs without a testing.TB (the benchmarks).
func PickFreePort() (int, error) { return freePort() }

// FreeAddr returns "127.0.0.1:<port>" for a port from FreePort.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// lowestPort is the lowest port FreePort picks (pickRange).
const lowestPort = 20000

// reserved holds the ports this process handed out, with their lock files open: the locks
// last as long as the process, and the kernel drops them when it exits, however it exits.
var reserved struct {
	sync.Mutex
	ports map[int]*os.File
}

func freePort() (int, error) {
	lo, hi := pickRange(ephemeralRange())
	// One directory per user: a directory another user made would refuse this user's files.
	dir := filepath.Join(os.TempDir(), "switchyard-test-ports-"+strconv.Itoa(os.Getuid()))
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return 0, err
	}
	reserved.Lock()
	defer reserved.Unlock()
	if reserved.ports == nil {
		reserved.ports = map[int]*os.File{}
	}
	for range 1000 {
		port := lo + rand.IntN(hi-lo)
		if reserved.ports[port] != nil {
			continue
		}
		lock, ok, err := lockPort(dir, port)
		if err != nil {
			return 0, err
		}
		if !ok {
			continue // another test process holds it
		}
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			if err := l.Close(); err != nil {
				return 0, err
			}
			reserved.ports[port] = lock
			return port, nil
		}
		_ = lock.Close() // bound by something else; let the lock go
	}
	return 0, errors.New("1000 ports in a row were locked by other tests or bound")
}

// pickRange is the range [lo, hi) FreePort picks from: the ports below the kernel's ephemeral
// range, or above it when that leaves more; where the ephemeral range covers nearly all ports
// (at most 1000 left on either side), all of [lowestPort, 65536), the locks then keeping tests
// apart and the bind check catching the kernel's own picks.
func pickRange(start, end int) (lo, hi int) {
	below, above := start-lowestPort, 65535-end
	switch {
	case below >= 1000 && below >= above:
		return lowestPort, start
	case above >= 1000:
		return end + 1, 65536
	default:
		return lowestPort, 65536
	}
}

// ephemeralRange is the range of ports the kernel assigns by itself (inclusive), Linux's
// default 32768-60999 where it cannot be read.
func ephemeralRange() (start, end int) {
	start, end = 32768, 60999
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return start, end
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 {
		return start, end
	}
	s, err1 := strconv.Atoi(fields[0])
	e, err2 := strconv.Atoi(fields[1])
	if err1 != nil || err2 != nil || s > e {
		return start, end
	}
	return s, e
}
