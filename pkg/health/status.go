package health

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	neturl "net/url"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/switchyard-db/switchyard/pkg/mysql"
)

// statusMaxAge is how long a kept status connection serves, give or take a
// quarter (so that connections made together are not made again together).
// Then the next check connects anew: a status port that stopped accepting,
// or a host name that now resolves elsewhere, is noticed within that time.
const statusMaxAge = time.Minute

// statusBudget bounds what one status answer may send, headers and body
// together.
const statusBudget = 2 * maxStatusBody

// statusReaders are the buffers status answers are read through. A kept
// connection holds none between checks: a thousand idle ones would hold
// 4 MiB.
var statusReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}

// statusConn is one HTTP/1.1 connection to a backend's status port. The
// scheduled checks keep it between probes, as Envoy's HTTP health checker
// reuses its connection: a new TCP connection and HTTP exchange per backend
// per second was most of an idle proxy's CPU with 1,000 TiDB backends
// (docs/benchmarks.md, P6). It speaks HTTP/1.1 itself, without net/http's
// Transport, whose read and write goroutines per connection would make the
// prober's goroutines O(backends). It is used by one goroutine at a time.
type statusConn struct {
	hostPort string
	tcp      net.Conn // closed with a reset
	rw       net.Conn // tcp, or TLS over it
	budget   budgetReader
	req      []byte
	expires  time.Time // after this the connection is not used again
}

// budgetReader reads at most n more bytes, then fails.
type budgetReader struct {
	r io.Reader
	n int
}

var errStatusTooLong = errors.New("status answer too long")

func (b *budgetReader) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, errStatusTooLong
	}
	if len(p) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= n
	return n, err
}

// checkStatus asks TiDB's status port for /status. TiDB answers 500 there
// while it shuts down gracefully, when its SQL port still accepts. With
// keep it asks on kept (nil: none), and returns the connection to keep for
// the next check (nil: none); without, it asks on a new connection, which it
// closes.
func (p *Prober) checkStatus(ctx context.Context, t Target, kept *statusConn, keep bool) (*statusConn, error) {
	host, _, err := net.SplitHostPort(t.Addr)
	if err != nil {
		kept.close()
		return nil, fmt.Errorf("status port: %w", err)
	}
	hostPort := net.JoinHostPort(host, strconv.FormatUint(uint64(t.StatusPort), 10))
	code, kept, err := p.getStatus(ctx, host, hostPort, kept, keep)
	if err != nil {
		// Rendered as net/http's client renders it: Get "<url>": <cause>.
		url := p.scheme + "://" + hostPort + "/status"
		return nil, fmt.Errorf("status port: %w", &neturl.Error{Op: "Get", URL: url, Err: err})
	}
	if code != http.StatusOK {
		return kept, fmt.Errorf("status port answered %d", code)
	}
	return kept, nil
}

// getStatus makes one GET of /status on hostPort and returns the status
// code; a redirect is an answer, not somewhere to go. It asks on kept when
// that is still good for hostPort. When kept fails otherwise than by time
// (the server closed the idle connection), a new connection decides, as for
// a kept SQL connection; a kept connection that does not answer in time is
// the verdict, and is dropped, so the next check connects anew.
func (p *Prober) getStatus(ctx context.Context, host, hostPort string, kept *statusConn, keep bool) (int, *statusConn, error) {
	if kept != nil && (kept.hostPort != hostPort || !time.Now().Before(kept.expires)) {
		kept.close()
		kept = nil
	}
	if kept != nil {
		code, reusable, err := kept.get(ctx)
		if err == nil {
			if !reusable {
				kept.close()
				kept = nil
			}
			return code, kept, nil
		}
		kept.close()
		if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
			return 0, nil, err
		}
		p.lg.Debug("kept status connection failed, connecting again", zap.String("addr", hostPort), zap.Error(err))
	}
	c, err := p.dialStatus(ctx, host, hostPort, keep)
	if err != nil {
		return 0, nil, err
	}
	p.statusDials.Add(1)
	code, reusable, err := c.get(ctx)
	if err != nil || !reusable || !keep {
		c.close()
		return code, nil, err
	}
	return code, c, nil
}

// dialStatus connects to hostPort, with TLS when the status checks use it.
// Unless keep, the request asks the server to close after its answer.
func (p *Prober) dialStatus(ctx context.Context, host, hostPort string, keep bool) (*statusConn, error) {
	tcp, err := p.dialer.DialContext(ctx, "tcp", hostPort)
	if err != nil {
		return nil, err
	}
	c := &statusConn{hostPort: hostPort, tcp: tcp, rw: tcp,
		expires: time.Now().Add(statusMaxAge*3/4 + rand.N(statusMaxAge/2))}
	if p.statusTLS != nil {
		cfg := p.statusTLS
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			cfg.ServerName = host
		}
		tc := tls.Client(tcp, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.close()
			return nil, mysql.StableErr(ctx, err)
		}
		c.rw = tc
	}
	c.budget.r = c.rw
	req := "GET /status HTTP/1.1\r\nHost: " + hostPort + "\r\nUser-Agent: switchyard-health\r\n"
	if !keep {
		req += "Connection: close\r\n"
	}
	c.req = []byte(req + "\r\n")
	return c, nil
}

// get sends one request and reads its answer within ctx. reusable says
// whether the connection can carry the next one: the answer was read whole,
// within its budget, and the server did not say it closes.
func (c *statusConn) get(ctx context.Context) (code int, reusable bool, err error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.rw.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.rw.SetDeadline(time.Now()) })
	defer stop()
	if _, err := c.rw.Write(c.req); err != nil {
		return 0, false, mysql.StableErr(ctx, err)
	}
	c.budget.n = statusBudget
	br := statusReaders.Get().(*bufio.Reader)
	br.Reset(&c.budget)
	defer func() {
		br.Reset(nil)
		statusReaders.Put(br)
	}()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, false, mysql.StableErr(ctx, err)
	}
	n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, maxStatusBody+1))
	_ = resp.Body.Close()
	reusable = err == nil && n <= maxStatusBody && !resp.Close && br.Buffered() == 0
	return resp.StatusCode, reusable, nil
}

// close closes the connection with a reset, as a greeting probe does
// (mysql.ReadGreeting): the backend keeps no TIME_WAIT socket per check
// (1,000 backends checked each second on new connections kept 46,000 of
// them on bench/topology's one host). It is a no-op on nil.
func (c *statusConn) close() {
	if c == nil {
		return
	}
	if tc, ok := c.tcp.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.tcp.Close()
}
