package register

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard-db/switchyard/lib/etcdclient"
	"go.uber.org/zap"
)

// timings are the waits a Registrar uses; tests shorten some of them.
type timings struct {
	request        time.Duration // one etcd call while running
	cleanup        time.Duration // the whole deregistration on shutdown
	probe          time.Duration // one SQL-port check or greeting read
	backoffMin     time.Duration
	backoffMax     time.Duration
	versionRetry   time.Duration // greeting re-read while the version is unknown
	versionRefresh time.Duration // greeting re-read once known (the backend may be upgraded)
	httpShutdown   time.Duration
}

var defaultTimings = timings{
	request:        5 * time.Second,
	cleanup:        3 * time.Second,
	probe:          1500 * time.Millisecond, // under the proxy's 2s status timeout
	backoffMin:     200 * time.Millisecond,
	backoffMax:     5 * time.Second,
	versionRetry:   5 * time.Second,
	versionRefresh: time.Minute,
	httpShutdown:   2 * time.Second,
}

// Registrar registers one backend in one etcd and serves its status port.
type Registrar struct {
	lg     *zap.Logger
	cfg    Config
	t      timings
	dialer *net.Dialer
	proc   procFS

	running atomic.Bool
	ready   chan struct{}
	addr    net.Addr // set before ready is closed

	// Set by Run before anything reads them.
	statusPort uint
	deployPath string
	started    time.Time

	version atomic.Pointer[string] // what /status reports and register writes
	lease   atomic.Int64           // the last lease granted, for revocation
}

// New validates cfg and builds a Registrar without any I/O.
func New(lg *zap.Logger, cfg Config) (*Registrar, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &Registrar{
		lg:     lg.Named("register").With(zap.String("addr", cfg.Addr)),
		cfg:    cfg,
		t:      defaultTimings,
		dialer: &net.Dialer{},
		proc:   defaultProcFS,
		ready:  make(chan struct{}),
	}
	v := cfg.Version
	if v == "" {
		v = UnknownVersion
	}
	r.version.Store(&v)
	return r, nil
}

// Ready is closed once the status listener is up.
func (r *Registrar) Ready() <-chan struct{} { return r.ready }

// StatusAddr is the bound status address, nil before Ready is closed.
func (r *Registrar) StatusAddr() net.Addr {
	select {
	case <-r.ready:
		return r.addr
	default:
		return nil
	}
}

// Version is the version currently registered (or about to be).
func (r *Registrar) Version() string { return *r.version.Load() }

// Run serves the status port, registers the backend and keeps it registered
// until ctx is done; etcd being unreachable is retried forever, never
// returned. Then it removes its keys, revokes its lease, stops serving and
// returns nil. It fails only when the status address cannot be bound.
func (r *Registrar) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("register: Run called twice")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", r.cfg.StatusAddr)
	if err != nil {
		return fmt.Errorf("listen on status address: %w", err)
	}
	cli, err := etcdclient.New(r.lg, r.cfg.EtcdEndpoints, r.cfg.EtcdTLS)
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("etcd client: %w", err)
	}
	r.addr = ln.Addr()
	if tcp, ok := r.addr.(*net.TCPAddr); ok {
		r.statusPort = uint(tcp.Port)
	}
	r.deployPath = deployPath()
	r.started = time.Now()

	srv := &http.Server{
		Handler:           r.handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          zap.NewStdLog(r.lg.Named("http")),
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			r.lg.Error("status server stopped", zap.Error(err))
		}
	})
	close(r.ready)
	r.lg.Info("serving status", zap.Stringer("status_addr", r.addr),
		zap.String("key", r.cfg.infoKey()), zap.Duration("ttl", r.cfg.TTL))

	r.keepRegistered(ctx, cli)
	r.deregister(cli)

	sctx, cancel := context.WithTimeout(context.Background(), r.t.httpShutdown)
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	cancel()
	if err := cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		r.lg.Debug("closing the etcd client", zap.Error(err))
	}
	wg.Wait()
	r.lg.Info("stopped")
	return nil
}

func (r *Registrar) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", r.handleStatus)
	mux.HandleFunc("GET /metrics", r.handleMetrics)
	return mux
}

// deployPath mirrors TiDB, which reports the directory of its own binary.
func deployPath() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	return filepath.Dir(exe)
}
