package health

import (
	"context"
	"fmt"
	"net/http"
	neturl "net/url"

	"github.com/switchyard-db/switchyard/lib/httpkeep"
	"github.com/switchyard-db/switchyard/pkg/observer"
)

// statusTarget is the GET of t's /status; without a status port its
// HostPort is empty.
func (p *Prober) statusTarget(t Target) httpkeep.Target {
	return httpkeep.Target{
		HostPort: observer.StatusAddr(t.Addr, t.StatusPort),
		Path:     "/status",
		TLS:      p.statusTLS,
		Budget:   maxStatusBody,
	}
}

// checkStatus asks TiDB's status port for /status (target: statusTarget). TiDB answers 500 there
// while it shuts down gracefully, when its SQL port still accepts. With
// keep it asks on kept (nil: none) through the prober's keep-alive client,
// and returns the connection to keep for the next check (nil: none): a new
// TCP connection and HTTP exchange per backend per second was the largest
// part of an idle proxy's CPU with 1,000 TiDB backends (docs/benchmarks.md,
// P6). Without keep it asks on a new connection, which it closes. The
// prober's loop asks on kept connections itself (roundLocked), with the
// same verdicts.
func (p *Prober) checkStatus(ctx context.Context, target httpkeep.Target, kept *httpkeep.Conn, keep bool) (*httpkeep.Conn, error) {
	cl := p.statusOnce
	if keep {
		cl = p.statusKept
	}
	code, kept, err := cl.Get(ctx, target, kept, nil)
	if err != nil {
		return nil, statusError(target, err)
	}
	return kept, statusVerdict(code)
}

// statusError is a status check's failure to get an answer, rendered as
// net/http's client renders it: Get "<url>": <cause>.
func statusError(target httpkeep.Target, err error) error {
	return fmt.Errorf("status port: %w", &neturl.Error{Op: "Get", URL: target.URL(), Err: err})
}

// statusVerdict is the verdict of a status check answered with code.
func statusVerdict(code int) error {
	if code != http.StatusOK {
		return fmt.Errorf("status port answered %d", code)
	}
	return nil
}
