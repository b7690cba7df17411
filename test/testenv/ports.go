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

// FreeAddr returns "127.0.0.1:<port>" for a port from FreePort.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// Ports are picked from [lowestPort, the ephemeral range's start).
const lowestPort = 20000

// reserved holds the ports this process handed out, with their lock files open: the locks
// last as long as the process, and the kernel drops them when it exits, however it exits.
var reserved struct {
	sync.Mutex
	ports map[int]*os.File
}

func freePort() (int, error) {
	hi := ephemeralStart()
	if hi-lowestPort < 1000 {
		return 0, errors.New("the kernel's ephemeral port range leaves fewer than 1000 ports below it")
	}
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
		port := lowestPort + rand.IntN(hi-lowestPort)
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

// ephemeralStart is the first port the kernel assigns by itself; 32768 (Linux's default)
// where the range cannot be read.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(fields[0])
	if err != nil {
		return 32768
	}
	return n
}
