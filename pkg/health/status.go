package health

import (
	"context"
	"fmt"
	"net"
	"net/http"
	neturl "net/url"
	"strconv"

	"github.com/switchyard-db/switchyard/lib/httpkeep"
)

// checkStatus asks TiDB's status port for /status. TiDB answers 500 there
// while it shuts down gracefully, when its SQL port still accepts. With
// keep it asks on kept (nil: none) through the prober's keep-alive client,
// and returns the connection to keep for the next check (nil: none): a new
// TCP connection and HTTP exchange per backend per second was the largest
// part of an idle proxy's CPU with 1,000 TiDB backends (docs/benchmarks.md,
// P6). Without keep it asks on a new connection, which it closes.
func (p *Prober) checkStatus(ctx context.Context, t Target, kept *httpkeep.Conn, keep bool) (*httpkeep.Conn, error) {
	host, _, err := net.SplitHostPort(t.Addr)
	if err != nil {
		kept.Close()
		return nil, fmt.Errorf("status port: %w", err)
	}
	target := httpkeep.Target{
		HostPort: net.JoinHostPort(host, strconv.FormatUint(uint64(t.StatusPort), 10)),
		Path:     "/status",
		TLS:      p.statusTLS,
		Budget:   maxStatusBody,
	}
	cl := p.statusOnce
	if keep {
		cl = p.statusKept
	}
	code, kept, err := cl.Get(ctx, target, kept, nil)
	if err != nil {
		// Rendered as net/http's client renders it: Get "<url>": <cause>.
		url := p.scheme + "://" + target.HostPort + "/status"
		return nil, fmt.Errorf("status port: %w", &neturl.Error{Op: "Get", URL: url, Err: err})
	}
	if code != http.StatusOK {
		return kept, fmt.Errorf("status port answered %d", code)
	}
	return kept, nil
}
