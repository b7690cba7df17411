package metricsreader

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard-db/switchyard/lib/cadence"
	"github.com/switchyard-db/switchyard/lib/httpkeep"
	"github.com/switchyard-db/switchyard/lib/lifecycle"
	"github.com/switchyard-db/switchyard/lib/notify"
	"go.uber.org/zap"

	"github.com/switchyard-db/switchyard/pkg/observer"
)

// Default PromQL queries. The job label is what TiUP deployments set; other
// deployments pass their own queries in Config.
const (
	DefaultCPUQuery    = `irate(process_cpu_seconds_total{job="tidb"}[30s])/tidb_server_maxprocs`
	DefaultMemoryQuery = `process_resident_memory_bytes{job="tidb"}/tidb_server_memory_quota_bytes`
)

// Sources of a Reader's results.
const (
	SourcePrometheus = "prometheus"
	SourceScrape     = "scrape"
)

const (
	defaultInterval = 5 * time.Second
	defaultTimeout  = 2 * time.Second
)

// Target is one backend to read.
type Target struct {
	// Addr is the backend's SQL address (host:port). Results are keyed by it.
	Addr string
	// StatusPort is the backend's HTTP status port; 0 means it has none, and
	// the backend gets no metrics.
	StatusPort uint
}

// statusAddr is the host:port Prometheus scrapes, which is also the value of
// the instance label on its samples; "" when the target has none.
func (t Target) statusAddr() string { return observer.StatusAddr(t.Addr, t.StatusPort) }

// Config tunes a Reader. The zero value works: it discovers nothing and
// scrapes status ports every 5s.
type Config struct {
	// PrometheusURL is the Prometheus base URL. Empty: ask Discover each
	// round, and scrape when that finds nothing either.
	PrometheusURL string
	// Discover, when set, returns a Prometheus base URL. It is called every
	// round (with Timeout), so that a Prometheus that appears or moves is
	// picked up without a restart; it should be cheap (a cluster runtime's
	// answers from its topology watch).
	Discover func(ctx context.Context) (string, error)
	// CPUQuery and MemoryQuery are PromQL instant queries whose samples carry
	// an instance label "host:status_port". Empty means the defaults.
	CPUQuery, MemoryQuery string
	// Interval between rounds; default 5s.
	Interval time.Duration
	// Timeout bounds each request (one query, one scrape, one Discover);
	// default 2s.
	Timeout time.Duration
	// HTTPClient serves the Prometheus queries, e.g. with the cluster's TLS
	// settings. Default: a client without keep-alive.
	HTTPClient *http.Client
	// StatusTLS, when set, makes the status-port scrapes https. They keep
	// their connections (lib/httpkeep), one per backend.
	StatusTLS *tls.Config
}

func (c Config) withDefaults() Config {
	if c.CPUQuery == "" {
		c.CPUQuery = DefaultCPUQuery
	}
	if c.MemoryQuery == "" {
		c.MemoryQuery = DefaultMemoryQuery
	}
	if c.Interval <= 0 {
		c.Interval = defaultInterval
	}
	if c.Timeout <= 0 {
		c.Timeout = defaultTimeout
	}
	if c.HTTPClient == nil {
		c.HTTPClient = defaultHTTPClient()
	}
	return c
}

// defaultHTTPClient does not keep connections alive: a query every few
// seconds gains little from reuse. It ignores HTTP_PROXY because Prometheus
// lives on the cluster's own network.
func defaultHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	tr.Proxy = nil
	return &http.Client{Transport: tr}
}

// Reader fetches the metrics of one cluster's backends.
type Reader struct {
	lg  *zap.Logger
	cfg Config
	now func() time.Time // tests replace it

	mu      sync.Mutex // guards targets and serializes publishing results
	targets []Target

	results atomic.Pointer[map[string]observer.Metrics]
	source  atomic.Pointer[string]
	updates notify.Signal
	kick    notify.Signal // new targets: fetch now

	// Owned by the fetching goroutine (or a test calling fetch directly).
	prev    map[string]scrapeSample
	prom    promClient
	promURL string
	// conns are the scrapes' kept connections by target Addr; a round's
	// scrapes take them and give back the ones to keep.
	conns map[string]*httpkeep.Conn

	scraper *httpkeep.Client

	loop lifecycle.Loop // the fetching goroutine
}

// NewReader builds a Reader for the named cluster without doing any I/O.
func NewReader(lg *zap.Logger, cluster string, cfg Config) *Reader {
	r := &Reader{
		lg:      lg.Named("metricsreader").With(zap.String("cluster", cluster)),
		cfg:     cfg.withDefaults(),
		now:     time.Now,
		updates: notify.NewSignal(),
		kick:    notify.NewSignal(),
		prev:    make(map[string]scrapeSample),
		conns:   make(map[string]*httpkeep.Conn),
	}
	r.scraper = &httpkeep.Client{Dialer: &net.Dialer{KeepAlive: -1}, Keep: true,
		OnRetry: func(hostPort string, err error) {
			r.lg.Debug("kept scrape connection failed, connecting again", zap.String("addr", hostPort), zap.Error(err))
		}}
	empty := map[string]observer.Metrics{}
	r.results.Store(&empty)
	none := ""
	r.source.Store(&none)
	return r
}

// Start launches the goroutine: it fetches at once, then every Interval and
// whenever SetTargets adds a target. Calls after the first, or after Close,
// do nothing.
func (r *Reader) Start(ctx context.Context) { r.loop.Start(ctx, r.run) }

// Close cancels any request in flight, waits for the goroutine and closes
// the kept connections. It is safe to call many times and without Start.
func (r *Reader) Close() {
	r.loop.Close()
	r.closeConns()
}

// closeConns closes the scrapes' kept connections. It runs on the fetching
// goroutine, or once it has ended.
func (r *Reader) closeConns() {
	for addr, c := range r.conns {
		c.Close()
		delete(r.conns, addr)
	}
}

func (r *Reader) run(ctx context.Context) {
	// On the process's cadence grid, so that the readers of many clusters,
	// and the probers, share their wake-ups.
	tick := cadence.NewTimer(r.cfg.Interval)
	defer tick.Stop()
	defer r.closeConns()
	for {
		r.fetch(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C():
			tick.Rearm()
		case <-r.kick.C():
		}
	}
}

// SetTargets replaces the set of backends. Results of removed backends vanish
// at once; added ones are fetched without waiting for the next interval. It
// is safe from any goroutine and never blocks on I/O.
func (r *Reader) SetTargets(ts []Target) {
	next := append([]Target(nil), ts...)
	r.mu.Lock()
	old := make(map[string]uint, len(r.targets))
	for _, t := range r.targets {
		old[t.Addr] = t.StatusPort
	}
	added := false
	for _, t := range next {
		if port, ok := old[t.Addr]; !ok || port != t.StatusPort {
			added = true
		}
	}
	r.targets = next
	r.publishLocked(*r.results.Load())
	r.mu.Unlock()
	if added {
		r.kick.Notify()
	}
}

// Results returns the latest metrics keyed by Target.Addr. The map is shared
// and must not be modified. A backend without a reading is absent.
func (r *Reader) Results() map[string]observer.Metrics { return *r.results.Load() }

// Updates signals, holding at most one pending signal, that Results changed.
func (r *Reader) Updates() <-chan struct{} { return r.updates.C() }

// Source says where the latest results came from: SourcePrometheus,
// SourceScrape, or "" before the first round with targets.
func (r *Reader) Source() string { return *r.source.Load() }

func (r *Reader) snapshotTargets() []Target {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.targets
}
