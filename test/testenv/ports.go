package testenv

import (
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and that this process has
// not handed out before. Another process can take it before the caller binds it, so servers
// started on it must treat a bind failure as retryable (StartMariaDB does).
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

// issuedPorts are the ports FreePort handed out: the kernel can pick the same free port for two
// listens in a row, and two addresses picked back to back for one proxy (its SQL and API ports)
// once came out equal (TestFleet/RegistrationDeleted: "bind: address already in use").
var issuedPorts struct {
	sync.Mutex
	m map[int]bool
}

func freePort() (int, error) {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		if err := l.Close(); err != nil {
			return 0, err
		}
		issuedPorts.Lock()
		if issuedPorts.m == nil {
			issuedPorts.m = map[int]bool{}
		}
		fresh := !issuedPorts.m[port]
		issuedPorts.m[port] = true
		issuedPorts.Unlock()
		if fresh {
			return port, nil
		}
	}
	return 0, errors.New("100 free ports in a row had all been handed out before")
}
