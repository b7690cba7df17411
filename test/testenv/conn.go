package testenv

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
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

// ServeOne listens on a loopback port and, in a goroutine, accepts one
// connection, runs serve on it and closes it. It returns the address and a
// channel that receives serve's error, or Accept's. The listener closes
// when the test ends.
func ServeOne(t testing.TB, serve func(net.Conn) error) (addr string, done <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: listen: %v", err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		errc <- serve(c)
	}()
	return ln.Addr().String(), errc
}

// ConnCounts counts the connections an HTTP test server accepted (New)
// and closed (Closed).
type ConnCounts struct{ New, Closed atomic.Int32 }

// CountConns makes srv, not started yet, count its connections.
func CountConns(srv *httptest.Server) *ConnCounts {
	c := &ConnCounts{}
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			c.New.Add(1)
		case http.StateClosed, http.StateHijacked:
			c.Closed.Add(1)
		}
	}
	return c
}
