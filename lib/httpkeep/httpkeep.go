// Package httpkeep makes the periodic GETs the proxy sends to its backends'
// status ports (the health checks' /status, the metrics scrapes' /metrics)
// on a connection kept from one GET to the next, as Envoy's HTTP health
// checker does. It speaks HTTP/1.1 on the connection itself, without
// net/http's Transport, which runs a read and a write goroutine per
// connection: a thousand backends cost no goroutine between GETs, and a GET
// costs one write and the reads of its answer.
//
// A kept connection is made again when the server closed it (a new
// connection decides, within the same GET), when it did not answer in time
// (the GET fails; the next one connects anew), when the server said
// Connection: close or the answer was not read whole, and after MaxAge, so
// that a port that stopped accepting, or a name that now resolves
// elsewhere, is noticed within that time. Connections are closed with a
// reset, so the backend keeps no TIME_WAIT socket per GET.
package httpkeep

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard-db/switchyard/lib/ctxerr"
)

// MaxAge is how long a kept connection serves, give or take a quarter (so
// that connections made together are not made again together).
const MaxAge = time.Minute

// Target is where a GET goes.
type Target struct {
	HostPort string // where to connect
	Path     string
	// TLS, when set, makes the GET https; without a ServerName of its own,
	// the host of HostPort is the server's name.
	TLS *tls.Config
	// Accept, when set, is the Accept header.
	Accept string
	// Gzip asks for a compressed answer, which the body is decoded from.
	Gzip bool
	// Budget bounds what one answer may send, headers and (compressed)
	// body together.
	Budget int
}

// URL is the GET's URL, as an error names it: https when TLS is set.
func (t Target) URL() string {
	scheme := "http"
	if t.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + t.HostPort + t.Path
}

// Client makes GETs for one kind of check. Its zero value is not usable:
// set Dialer.
type Client struct {
	Dialer *net.Dialer
	// Keep makes GETs reuse their connections; without it each GET asks
	// for Connection: close and closes its connection afterwards.
	Keep bool
	// OnRetry, when set, is told why a kept connection failed before a new
	// one is made (for a debug log).
	OnRetry func(hostPort string, err error)

	dials atomic.Uint64
}

// Dials is how many connections the client has made.
func (cl *Client) Dials() uint64 { return cl.dials.Load() }

// Conn is one connection to a status port. It is used by one goroutine at
// a time.
type Conn struct {
	hostPort string
	tcp      net.Conn // closed with a reset
	rw       net.Conn // tcp, or TLS over it
	budget   budgetReader
	req      []byte
	expires  time.Time
}

// Answers are read through pooled buffers: a kept connection holds none
// between GETs (a thousand idle ones would hold 4 MiB). A small answer (a
// /status) takes a small one. One that may be large (a /metrics page,
// which a server writes in chunks of about 4 KiB) takes a larger one, so
// that a read takes what has arrived, up to 16 KiB, rather than one chunk:
// with 4 KiB, the reads of 1 MiB pages were half of an idle proxy's CPU
// with 1,000 backends. 16 KiB took that proxy from about a third of a core
// to about a quarter, at about the same memory; 64 KiB saved a little more
// CPU for 25-50 MiB more memory (docs/benchmarks.md, "Large /metrics
// pages").
const (
	smallReader = 4 << 10
	largeReader = 16 << 10
	// largeAnswer: an answer whose budget is over this may be large.
	largeAnswer = 64 << 10
)

var smallReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, smallReader) }}
var largeReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, largeReader) }}

// reader is a pooled buffer for an answer of at most budget bytes, and
// the pool to put it back in.
func reader(budget int) (*bufio.Reader, *sync.Pool) {
	pool := &smallReaders
	if budget > largeAnswer {
		pool = &largeReaders
	}
	return pool.Get().(*bufio.Reader), pool
}

// gzipReaders are reused, as each holds about 40 KiB of state.
var gzipReaders sync.Pool

// Get makes one GET of t, on kept (nil: none) when that is still good for
// t, and returns the answer's status code and the connection to keep for
// the next GET (nil: none). read, when set, reads the body; a GET whose
// read fails fails. A redirect is an answer, not somewhere to go.
func (cl *Client) Get(ctx context.Context, t Target, kept *Conn, read func(io.Reader) error) (int, *Conn, error) {
	if kept != nil && !kept.Fresh(t.HostPort) {
		kept.Close()
		kept = nil
	}
	if kept != nil {
		code, reusable, err := kept.get(ctx, t, read)
		if err == nil {
			if !reusable {
				kept.Close()
				kept = nil
			}
			return code, kept, nil
		}
		kept.Close()
		if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || !retriable(err) {
			return 0, nil, err
		}
		if cl.OnRetry != nil {
			cl.OnRetry(t.HostPort, err)
		}
	}
	c, err := cl.dial(ctx, t)
	if err != nil {
		return 0, nil, err
	}
	code, reusable, err := c.get(ctx, t, read)
	if err != nil || !reusable || !cl.Keep {
		c.Close()
		return code, nil, err
	}
	return code, c, nil
}

// retriable is a failure of the connection, not of the answer's content:
// the server may have closed it while it was idle.
func retriable(err error) bool {
	var re readError
	return !errors.As(err, &re)
}

// readError is read's own failure: the answer came, and read refused it.
type readError struct{ err error }

func (e readError) Error() string { return e.err.Error() }
func (e readError) Unwrap() error { return e.err }

func (cl *Client) dial(ctx context.Context, t Target) (*Conn, error) {
	tcp, err := cl.Dialer.DialContext(ctx, "tcp", t.HostPort)
	if err != nil {
		return nil, err
	}
	cl.dials.Add(1)
	c := &Conn{hostPort: t.HostPort, tcp: tcp, rw: tcp,
		expires: time.Now().Add(MaxAge*3/4 + rand.N(MaxAge/2))}
	if t.TLS != nil {
		cfg := t.TLS
		if cfg.ServerName == "" {
			host, _, err := net.SplitHostPort(t.HostPort)
			if err != nil {
				c.Close()
				return nil, err
			}
			cfg = cfg.Clone()
			cfg.ServerName = host
		}
		tc := tls.Client(tcp, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, ctxerr.Stable(ctx, err)
		}
		c.rw = tc
	}
	c.budget.r = c.rw
	var req strings.Builder
	req.WriteString("GET " + t.Path + " HTTP/1.1\r\nHost: " + t.HostPort + "\r\nUser-Agent: switchyard\r\n")
	if t.Accept != "" {
		req.WriteString("Accept: " + t.Accept + "\r\n")
	}
	if t.Gzip {
		req.WriteString("Accept-Encoding: gzip\r\n")
	}
	if !cl.Keep {
		req.WriteString("Connection: close\r\n")
	}
	req.WriteString("\r\n")
	c.req = []byte(req.String())
	return c, nil
}

// get sends one request and reads its answer within ctx. reusable says
// whether the connection can carry the next one: the answer was read whole,
// within its budget, the server did not say it closes, and ctx did not end.
// It leaves the connection without a deadline.
func (c *Conn) get(ctx context.Context, t Target, read func(io.Reader) error) (code int, reusable bool, err error) {
	stop := ctxerr.Bound(ctx, c.rw)
	if err := c.Send(); err != nil {
		stop()
		return 0, false, ctxerr.Stable(ctx, err)
	}
	code, reusable, err = c.Receive(t, read)
	if !stop() {
		// ctx ended meanwhile: its AfterFunc may set a past deadline at any
		// moment, so the connection cannot be trusted any more.
		reusable = false
	} else if reusable {
		_ = c.rw.SetDeadline(time.Time{})
	}
	if err != nil {
		var re readError
		if errors.As(err, &re) && ctx.Err() == nil && !errors.Is(re.err, os.ErrDeadlineExceeded) {
			return 0, false, err // read refused the answer
		} else if re.err != nil {
			err = re.err // time ran out while read read
		}
		return 0, false, ctxerr.Stable(ctx, err)
	}
	return code, reusable, nil
}

// Fresh reports whether c may carry a GET to hostPort now: it is
// connected there, and has not aged out (MaxAge). Get makes that check
// itself; a caller of Send and Receive makes it before.
func (c *Conn) Fresh(hostPort string) bool {
	return c.hostPort == hostPort && time.Now().Before(c.expires)
}

// Send writes the connection's request, without waiting for the answer,
// which Receive reads. With them a caller can send a GET on many
// connections, then read their answers, and park once for all of them, as
// the health prober's loop does for its status checks. Neither sets a deadline:
// SetDeadline bounds them. A failed Send or Receive leaves the connection
// good only for Close.
func (c *Conn) Send() error {
	_, err := c.rw.Write(c.req)
	return err
}

// Receive reads the answer to Send's GET of t, as Get does: read, when set,
// reads the body of a 200 answer, and a failure of read's own is an error
// Get would not retry on a new connection. reusable says whether the
// connection can carry the next GET.
func (c *Conn) Receive(t Target, read func(io.Reader) error) (code int, reusable bool, err error) {
	c.budget.n = t.Budget
	br, pool := reader(t.Budget)
	br.Reset(&c.budget)
	defer func() {
		br.Reset(nil)
		pool.Put(br)
	}()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	var body io.Reader = resp.Body
	if t.Gzip && strings.EqualFold(resp.Header.Get("Content-Encoding"), "gzip") {
		zr, err := gzipReader(resp.Body)
		if err != nil {
			return 0, false, err
		}
		defer gzipReaders.Put(zr)
		body = zr
	}
	if read != nil && resp.StatusCode == http.StatusOK {
		if err := read(body); err != nil {
			return 0, false, readError{err}
		}
	}
	// What read left, up to the budget: the next answer starts after it.
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return resp.StatusCode, false, nil
	}
	return resp.StatusCode, !resp.Close && br.Buffered() == 0, nil
}

// SetDeadline bounds Send and Receive (zero: no bound).
func (c *Conn) SetDeadline(t time.Time) error { return c.rw.SetDeadline(t) }

func gzipReader(r io.Reader) (*gzip.Reader, error) {
	if zr, ok := gzipReaders.Get().(*gzip.Reader); ok {
		if err := zr.Reset(r); err != nil {
			return nil, err
		}
		return zr, nil
	}
	return gzip.NewReader(r)
}

// Close closes the connection with a reset. It is a no-op on nil.
func (c *Conn) Close() {
	if c == nil {
		return
	}
	if tc, ok := c.tcp.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.tcp.Close()
}

// budgetReader reads at most n more bytes, then fails.
type budgetReader struct {
	r io.Reader
	n int
}

// ErrTooLong is the error of an answer over its Target's Budget.
var ErrTooLong = errors.New("answer too long")

func (b *budgetReader) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, ErrTooLong
	}
	if len(p) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= n
	return n, err
}
