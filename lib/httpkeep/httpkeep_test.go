package httpkeep

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchyard-db/switchyard/test/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// server answers GETs with page, gzipped when asked, and counts the
// connections made to it and the requests.
type server struct {
	srv     *httptest.Server
	cc      *testenv.ConnCounts
	gzipped atomic.Int32
	code    atomic.Int32
}

func newServer(t *testing.T, page string) *server {
	s := &server{}
	s.code.Store(http.StatusOK)
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept-Encoding") == "gzip" {
			s.gzipped.Add(1)
			w.Header().Set("Content-Encoding", "gzip")
			w.WriteHeader(int(s.code.Load()))
			zw := gzip.NewWriter(w)
			_, _ = io.WriteString(zw, page)
			_ = zw.Close()
			return
		}
		w.WriteHeader(int(s.code.Load()))
		_, _ = io.WriteString(w, page)
	}))
	s.cc = testenv.CountConns(s.srv)
	s.srv.Start()
	t.Cleanup(s.srv.Close)
	return s
}

func (s *server) target(gz bool) Target {
	hp := s.srv.Listener.Addr().String()
	return Target{HostPort: hp, Path: "/metrics", Gzip: gz, Budget: 1 << 20}
}

func ctx5s(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func readAll(into *string) func(io.Reader) error {
	return func(r io.Reader) error {
		b, err := io.ReadAll(r)
		*into = string(b)
		return err
	}
}

// Kept: one connection serves GET after GET, plain or gzipped (decoded for
// read), until it is old; then the next GET connects anew.
func TestKeptConnection(t *testing.T) {
	page := strings.Repeat("process_cpu_seconds_total 1.5\n", 200)
	for _, gz := range []bool{false, true} {
		s := newServer(t, page)
		cl := &Client{Dialer: &net.Dialer{}, Keep: true}
		var kept *Conn
		for range 3 {
			var got string
			code, c, err := cl.Get(ctx5s(t), s.target(gz), kept, readAll(&got))
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, code)
			require.Equal(t, page, got)
			require.NotNil(t, c)
			kept = c
		}
		require.EqualValues(t, 1, s.cc.New.Load(), "gzip %t: one connection", gz)
		require.EqualValues(t, 1, cl.Dials())
		if gz {
			require.EqualValues(t, 3, s.gzipped.Load())
		}

		kept.expires = time.Now()
		_, c, err := cl.Get(ctx5s(t), s.target(gz), kept, nil)
		require.NoError(t, err)
		require.EqualValues(t, 2, s.cc.New.Load(), "an old connection is made again")
		require.Eventually(t, func() bool { return s.cc.Closed.Load() == 1 }, 5*time.Second, 5*time.Millisecond)
		c.Close()
	}
}

// A kept connection the server closed is replaced within the same GET; an
// answer read refuses is a failure, not a reason to ask again.
func TestClosedByServerAndRefusedAnswer(t *testing.T) {
	s := newServer(t, "page")
	cl := &Client{Dialer: &net.Dialer{}, Keep: true}
	var retried []string
	cl.OnRetry = func(hp string, err error) { retried = append(retried, hp) }
	_, kept, err := cl.Get(ctx5s(t), s.target(false), nil, nil)
	require.NoError(t, err)
	s.srv.CloseClientConnections()
	require.Eventually(t, func() bool { return s.cc.Closed.Load() == 1 }, 5*time.Second, 5*time.Millisecond)

	code, kept, err := cl.Get(ctx5s(t), s.target(false), kept, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, []string{s.target(false).HostPort}, retried)
	require.EqualValues(t, 2, cl.Dials())

	bad := errors.New("not a metrics page")
	_, c, err := cl.Get(ctx5s(t), s.target(false), kept, func(io.Reader) error { return bad })
	require.ErrorIs(t, err, bad)
	require.Nil(t, c)
	require.EqualValues(t, 2, cl.Dials(), "no new connection for an answer read refused")
	require.Len(t, retried, 1)

	// Not a 200: read is not called, and the connection is kept.
	s.code.Store(http.StatusInternalServerError)
	code, c, err = cl.Get(ctx5s(t), s.target(false), nil, func(io.Reader) error { return bad })
	require.NoError(t, err)
	require.Equal(t, http.StatusInternalServerError, code)
	require.NotNil(t, c)
	c.Close()
}

// An answer over its budget gives its status code, and its connection is
// not kept.
func TestOverBudget(t *testing.T) {
	s := newServer(t, strings.Repeat("x", 8<<10))
	cl := &Client{Dialer: &net.Dialer{}, Keep: true}
	tg := s.target(false)
	tg.Budget = 4 << 10
	code, c, err := cl.Get(ctx5s(t), tg, nil, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	require.Nil(t, c)
	var got string
	_, c, err = cl.Get(ctx5s(t), tg, nil, readAll(&got))
	require.ErrorIs(t, err, ErrTooLong, "read sees the budget run out")
	require.Nil(t, c)
}

// Without Keep, a GET asks for Connection: close and closes its connection
// with a reset, so the server keeps no TIME_WAIT socket.
func TestOnceClosesWithReset(t *testing.T) {
	addr, after := testenv.ServeOne(t, func(c net.Conn) error {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return err
		}
		if !req.Close {
			return errors.New("the GET did not ask for Connection: close")
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")
		_ = c.(*net.TCPConn).CloseWrite()
		_, err = c.Read(make([]byte, 1))
		return err
	})
	cl := &Client{Dialer: &net.Dialer{}}
	code, c, err := cl.Get(ctx5s(t), Target{HostPort: addr, Path: "/status", Budget: 1 << 10}, nil, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	require.Nil(t, c, "nothing is kept without Keep")
	require.ErrorIs(t, <-after, syscall.ECONNRESET, "the close is a reset")
}

// Send and Receive apart: GETs sent on two kept connections before either
// answer is read are both answered, on the same connections. Get leaves no
// deadline on the connection it keeps, so they can be used after its
// context's deadline has passed. Fresh says where a connection may go.
func TestSendReceiveApart(t *testing.T) {
	s1, s2 := newServer(t, "one"), newServer(t, "two")
	cl := &Client{Dialer: &net.Dialer{}, Keep: true}
	short, cancel := context.WithTimeout(context.Background(), time.Second)
	_, c1, err := cl.Get(short, s1.target(false), nil, nil)
	require.NoError(t, err)
	_, c2, err := cl.Get(short, s2.target(false), nil, nil)
	require.NoError(t, err)
	cancel()
	t.Cleanup(c1.Close)
	t.Cleanup(c2.Close)
	require.True(t, c1.Fresh(s1.target(false).HostPort))
	require.False(t, c1.Fresh(s2.target(false).HostPort), "another address")

	time.Sleep(time.Second + 100*time.Millisecond) // past Get's deadline
	for range 2 {
		require.NoError(t, c1.Send())
		require.NoError(t, c2.Send())
		for _, x := range []struct {
			c    *Conn
			s    *server
			want string
		}{{c1, s1, "one"}, {c2, s2, "two"}} {
			var got string
			code, reusable, err := x.c.Receive(x.s.target(false), readAll(&got))
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, code)
			require.True(t, reusable)
			require.Equal(t, x.want, got)
		}
	}
	require.EqualValues(t, 1, s1.cc.New.Load())
	require.EqualValues(t, 1, s2.cc.New.Load())

	c1.expires = time.Now()
	require.False(t, c1.Fresh(s1.target(false).HostPort), "aged out")
}

// An answer that may be large is read through a larger buffer than a
// /status answer.
func TestReaderSize(t *testing.T) {
	for _, tc := range []struct{ budget, size int }{
		{1 << 10, smallReader},
		{64 << 10, smallReader}, // the health check's /status
		{64 << 20, largeReader}, // the metrics reader's pages
	} {
		br, pool := reader(tc.budget)
		require.Equal(t, tc.size, br.Size(), "budget %d", tc.budget)
		pool.Put(br)
	}
}
