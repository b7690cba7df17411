package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	libapi "github.com/switchyard-db/switchyard/lib/api"
	libconfig "github.com/switchyard-db/switchyard/lib/config"
	cfgmgr "github.com/switchyard-db/switchyard/pkg/manager/config"
	"github.com/switchyard-db/switchyard/pkg/observer"
	"go.uber.org/zap"
)

// maxConfigBody bounds PUT /api/v1/config; real configs are a few KiB.
const maxConfigBody = 1 << 20

// maxBody bounds every request body; handlers that expect less set their
// own, smaller limit.
const maxBody = maxConfigBody

// HTTP server limits. A slow or stuck client is cut off instead of holding a
// connection and a goroutine for ever.
const (
	// readHeaderTimeout bounds reading the request line and headers.
	readHeaderTimeout = 10 * time.Second
	// readTimeout bounds reading the whole request, body included (1 MiB
	// at most).
	readTimeout = 30 * time.Second
	// writeTimeout bounds a whole response. It is long because of pprof:
	// a CPU profile or trace runs for ?seconds= (30 by default) before it
	// answers, and pprof refuses durations of writeTimeout or more.
	writeTimeout = 2 * time.Minute
	// idleTimeout closes keep-alive connections with no request.
	idleTimeout = 2 * time.Minute
	// maxHeaderBytes bounds the request line and headers.
	maxHeaderBytes = 64 << 10
)

// timeouts are the limits of the HTTP server; tests shorten them.
type timeouts struct {
	readHeader, read, write, idle time.Duration
}

var defaultTimeouts = timeouts{readHeader: readHeaderTimeout, read: readTimeout, write: writeTimeout, idle: idleTimeout}

// Proxy is what the API reads from, and asks of, the running proxy.
type Proxy interface {
	Topology() *observer.Topology
	// SessionDocs describes the client sessions, with backends as IDs, in
	// a new slice the caller may reorder.
	SessionDocs() []libapi.Session
	// BackendSessions counts routed sessions per backend ID.
	BackendSessions() map[string]int64
	// LastProbes is when each backend was last probed, by backend ID, read
	// from the probers: the topology is republished only when a verdict
	// changes, so its probe times lag.
	LastProbes() map[string]time.Time
	// BuildErrors are the clusters whose runtime could not be built (and is
	// being retried), with the error.
	BuildErrors() map[string]string
	// Health is the proxy's own verdict; reason says why it is unhealthy.
	Health() (healthy bool, reason string)
	// Ready reports whether config and listeners are up.
	Ready() (ready bool, reason string)
	SetOverride(reason string)
	ClearOverride()
	// Components reports each part's state, keyed by name.
	Components() map[string]libapi.Component
}

// Config is the config manager as the API uses it.
type Config interface {
	Current() *libconfig.Config
	// Effective is the config in force: Current, except for settings that
	// need a restart, which keep their start-up value.
	Effective() *libconfig.Config
	Raw() []byte
	Checksum() string
	Status() cfgmgr.Status
	Set(raw []byte) error
}

// Server serves the API.
type Server struct {
	lg       *zap.Logger
	proxy    Proxy
	cfg      Config
	auth     *Auth
	timeouts timeouts
	metrics  http.Handler
	mux      *http.ServeMux
	coord    Coordination
	nodeID   string
	migr     Migrations

	mu  sync.Mutex
	srv *http.Server
	ln  net.Listener
}

// New builds the API over proxy and cfg. metrics serves /metrics (may be nil).
// auth decides who may call which endpoint.
func New(lg *zap.Logger, proxy Proxy, cfg Config, metrics http.Handler, auth *Auth) *Server {
	s := &Server{lg: lg.Named("api"), proxy: proxy, cfg: cfg, auth: auth, timeouts: defaultTimeouts,
		metrics: metrics, mux: http.NewServeMux()}
	s.routes()
	return s
}

// SetCoordination enables the HA endpoints (/api/v1/ha/leader, members)
// and names this node in their answers. Call it before Start.
func (s *Server) SetCoordination(c Coordination, nodeID string) {
	s.coord, s.nodeID = c, nodeID
	s.route("/api/v1/ha/leader", handlers{"GET": s.require(s.readOrPublic("/api/v1/ha/leader"), s.haLeader)})
	s.route("/api/v1/ha/members", handlers{"GET": s.require(RoleRead, s.haMembers)})
}

// HandleInternal mounts a handler for peer-to-peer endpoints
// (/internal/v1/...). Only fleet members may call them: the admin token, or
// a client certificate mapped to admin.
func (s *Server) HandleInternal(pattern string, h http.Handler) {
	s.mux.Handle(pattern, s.require(RoleAdmin, h.ServeHTTP))
}

// Handler returns the API's handler (for tests and embedding). Every
// request body is limited to maxBody.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		canonicalPaths(s.mux).ServeHTTP(w, r)
	})
}

// Start listens on addr (HTTPS when tlsCfg is set) and serves in the
// background until Close. Every request's context derives from ctx.
func (s *Server) Start(ctx context.Context, addr string, tlsCfg *tls.Config) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("api: listening on %s: %w", addr, err)
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.timeouts.readHeader,
		ReadTimeout:       s.timeouts.read,
		WriteTimeout:      s.timeouts.write,
		IdleTimeout:       s.timeouts.idle,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          zap.NewStdLog(s.lg),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	s.mu.Lock()
	s.srv, s.ln = srv, ln
	s.mu.Unlock()
	go func() {
		// Serve returns ErrServerClosed after Close; anything else is logged.
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.lg.Error("API server stopped", zap.Error(err))
		}
	}()
	s.lg.Info("API listening", zap.Stringer("addr", ln.Addr()), zap.Bool("tls", tlsCfg != nil))
	return nil
}

// Addr is the listening address, or nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Close stops serving, giving requests in flight a moment to finish.
func (s *Server) Close() {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		_ = srv.Close()
	}
}

// handlers maps methods to handlers for one path.
type handlers map[string]http.HandlerFunc

// route registers a path whose methods are dispatched here, so that a wrong
// method gets a JSON 405 with an Allow header.
func (s *Server) route(path string, hs handlers) {
	allow := make([]string, 0, len(hs))
	for m := range hs {
		allow = append(allow, m)
	}
	if _, ok := hs[http.MethodGet]; ok {
		allow = append(allow, http.MethodHead)
		hs[http.MethodHead] = hs[http.MethodGet]
	}
	allowed := strings.Join(sortedMethods(allow), ", ")
	s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		h, ok := hs[r.Method]
		if !ok {
			w.Header().Set("Allow", allowed)
			writeError(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED",
				fmt.Sprintf("%s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, allowed))
			return
		}
		h(w, r)
	})
}

var methodOrder = map[string]int{"GET": 0, "HEAD": 1, "POST": 2, "PUT": 3, "DELETE": 4}

func sortedMethods(ms []string) []string {
	out := slices.Clone(ms)
	slices.SortFunc(out, func(a, b string) int { return methodOrder[a] - methodOrder[b] })
	return out
}

func (s *Server) routes() {
	read := func(h http.HandlerFunc) http.HandlerFunc { return s.require(RoleRead, h) }
	admin := func(h http.HandlerFunc) http.HandlerFunc { return s.require(RoleAdmin, h) }
	public := func(path string, h http.HandlerFunc) http.HandlerFunc { return s.require(s.readOrPublic(path), h) }
	s.route("/livez", handlers{"GET": public("/livez", s.livez)})
	s.route("/readyz", handlers{"GET": public("/readyz", s.readyz)})
	s.route("/api/v1/health", handlers{"GET": read(s.health)})
	s.route("/api/v1/health/override", handlers{"PUT": admin(s.setOverride), "DELETE": admin(s.clearOverride)})
	s.route("/api/v1/clusters", handlers{"GET": read(s.clusters)})
	s.route("/api/v1/clusters/{name}", handlers{"GET": read(s.cluster)})
	s.route("/api/v1/clusters/{name}/backends", handlers{"GET": read(s.clusterBackends)})
	s.route("/api/v1/backends", handlers{"GET": read(s.backends)})
	s.route("/api/v1/sessions", handlers{"GET": read(s.sessions)})
	s.route("/api/v1/config", handlers{"GET": read(s.getConfig), "PUT": admin(s.putConfig)})
	s.route("/api/v1/config/status", handlers{"GET": read(s.configStatus)})
	if s.metrics != nil {
		s.route("/metrics", handlers{"GET": public("/metrics", s.metrics.ServeHTTP)})
	}
	// pprof shows the process's internals (goroutine stacks, the command
	// line) and a profile costs CPU: readers only.
	s.mux.HandleFunc("/debug/pprof/", read(pprof.Index))
	s.mux.HandleFunc("/debug/pprof/cmdline", read(pprof.Cmdline))
	s.mux.HandleFunc("/debug/pprof/profile", read(pprof.Profile))
	s.mux.HandleFunc("/debug/pprof/symbol", read(pprof.Symbol))
	s.mux.HandleFunc("/debug/pprof/trace", read(pprof.Trace))
	s.route("/{$}", handlers{"GET": read(s.statusPage)})
	// Unknown paths too: an anonymous client learns nothing, not even which
	// paths exist.
	s.mux.HandleFunc("/", read(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "no such endpoint: "+r.URL.Path)
	}))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// Not HTML: "<redacted>" and "<api.token>" should read as written.
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, libapi.Error{Code: code, Message: msg})
}
