package api

import (
	"context"
	"crypto/subtle"
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

	libconfig "github.com/switchyard-db/switchyard/lib/config"
	cfgmgr "github.com/switchyard-db/switchyard/pkg/manager/config"
	"github.com/switchyard-db/switchyard/pkg/observer"
	"github.com/switchyard-db/switchyard/pkg/proxy/backend"
	"go.uber.org/zap"
)

// maxConfigBody bounds PUT /api/v1/config; real configs are a few KiB.
const maxConfigBody = 1 << 20

// Proxy is what the API reads from, and asks of, the running proxy.
type Proxy interface {
	Topology() *observer.Topology
	Sessions() []backend.Info
	// BackendSessions counts routed sessions per backend ID.
	BackendSessions() map[string]int64
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
	Components() map[string]Component
}

// Config is the config manager as the API uses it.
type Config interface {
	Current() *libconfig.Config
	Raw() []byte
	Checksum() string
	Status() cfgmgr.Status
	Set(raw []byte) error
}

// Server serves the API.
type Server struct {
	lg      *zap.Logger
	proxy   Proxy
	cfg     Config
	token   string
	metrics http.Handler
	mux     *http.ServeMux
	coord   Coordination
	nodeID  string

	mu  sync.Mutex
	srv *http.Server
	ln  net.Listener
}

// New builds the API over proxy and cfg. metrics serves /metrics (may be nil).
// token, when not empty, is required by every mutating endpoint.
func New(lg *zap.Logger, proxy Proxy, cfg Config, metrics http.Handler, token string) *Server {
	s := &Server{lg: lg.Named("api"), proxy: proxy, cfg: cfg, token: token, metrics: metrics, mux: http.NewServeMux()}
	s.routes()
	return s
}

// SetCoordination enables the HA endpoints (/api/v1/ha/leader, members)
// and names this node in their answers. Call it before Start.
func (s *Server) SetCoordination(c Coordination, nodeID string) {
	s.coord, s.nodeID = c, nodeID
	s.route("/api/v1/ha/leader", handlers{"GET": s.haLeader})
	s.route("/api/v1/ha/members", handlers{"GET": s.haMembers})
}

// HandleInternal mounts a handler for peer-to-peer endpoints
// (/internal/v1/...); it does its own authentication.
func (s *Server) HandleInternal(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Handler returns the API's handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return canonicalPaths(s.mux) }

// Start listens on addr (HTTPS when tlsCfg is set) and serves in the
// background until Close.
func (s *Server) Start(addr string, tlsCfg *tls.Config) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("api: listening on %s: %w", addr, err)
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          zap.NewStdLog(s.lg),
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
	s.route("/livez", handlers{"GET": s.livez})
	s.route("/readyz", handlers{"GET": s.readyz})
	s.route("/api/v1/health", handlers{"GET": s.health})
	s.route("/api/v1/health/override", handlers{"PUT": s.auth(s.setOverride), "DELETE": s.auth(s.clearOverride)})
	s.route("/api/v1/clusters", handlers{"GET": s.clusters})
	s.route("/api/v1/clusters/{name}", handlers{"GET": s.cluster})
	s.route("/api/v1/clusters/{name}/backends", handlers{"GET": s.clusterBackends})
	s.route("/api/v1/backends", handlers{"GET": s.backends})
	s.route("/api/v1/sessions", handlers{"GET": s.sessions})
	s.route("/api/v1/config", handlers{"GET": s.getConfig, "PUT": s.auth(s.putConfig)})
	s.route("/api/v1/config/status", handlers{"GET": s.configStatus})
	if s.metrics != nil {
		s.route("/metrics", handlers{"GET": s.metrics.ServeHTTP})
	}
	s.mux.HandleFunc("/debug/pprof/", pprof.Index)
	s.mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	s.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	s.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	s.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	s.route("/{$}", handlers{"GET": s.statusPage})
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "no such endpoint: "+r.URL.Path)
	})
}

// auth requires the bearer token when one is configured.
func (s *Server) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.token != "" {
			// The scheme is case-insensitive (RFC 9110); the token is not.
			scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
			if !ok || !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="switchyard"`)
				writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "this endpoint needs Authorization: Bearer <api.token>")
				return
			}
		}
		h(w, r)
	}
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
	writeJSON(w, status, Error{Code: code, Message: msg})
}
