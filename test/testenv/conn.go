package testenv

import (
	"errors"
	"net"
	"testing"
	"time"
)

// RequireClosed fails the test unless the peer closes conn within 10 s.
func RequireClosed(t testing.TB, conn net.Conn) {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatalf("testenv: set deadline: %v", err)
	}
	var b [1]byte
	_, err := conn.Read(b[:])
	var ne net.Error
	switch {
	case err == nil:
		t.Fatalf("testenv: the peer sent more data instead of closing the connection")
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("testenv: the peer kept the connection open")
	}
}
