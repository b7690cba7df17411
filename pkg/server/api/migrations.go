package api

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	libapi "github.com/switchyard-db/switchyard/lib/api"
	"github.com/switchyard-db/switchyard/pkg/observer"
	"github.com/switchyard-db/switchyard/pkg/router"
	"go.uber.org/zap"
)

// maxDrainTimeout bounds the timeout a drain request may give.
const maxDrainTimeout = 24 * time.Hour

// Migrations is the operator surface of session migration: drains of
// backends and what the rebalancer did.
type Migrations interface {
	Drain(id string, timeout time.Duration) (router.Drain, error)
	Undrain(id string) bool
	Drains() map[string]router.Drain
	// DrainTimeout is the configured default (balance.backend-drain-timeout).
	DrainTimeout() time.Duration
	// Recent is the last finished migrations, newest first, and the totals
	// by result since start.
	Recent() ([]router.MigrationEvent, map[string]int64)
	// Pending counts the moves asked for and not finished.
	Pending() int
}

// SetMigrations enables the drain endpoints and GET /api/v1/migrations, and
// shows drains in the backend lists. Call it before Start.
func (s *Server) SetMigrations(m Migrations) {
	s.migr = m
	s.route("/api/v1/backends/{cluster}/{addr}/drain", handlers{"POST": s.require(RoleAdmin, s.drain), "DELETE": s.require(RoleAdmin, s.undrain)})
	s.route("/api/v1/migrations", handlers{"GET": s.require(RoleRead, s.migrations)})
}

func (s *Server) drain(w http.ResponseWriter, r *http.Request) {
	id := observer.BackendID(r.PathValue("cluster"), r.PathValue("addr"))
	timeout := s.migr.DrainTimeout()
	if t := r.URL.Query().Get("timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d <= 0 || d > maxDrainTimeout {
			writeError(w, http.StatusBadRequest, "BAD_REQUEST",
				fmt.Sprintf("timeout %q: want a duration like 90s, more than 0 and at most %s", t, maxDrainTimeout))
			return
		}
		timeout = d
	}
	d, err := s.migr.Drain(id, timeout)
	if errors.Is(err, router.ErrUnknownBackend) {
		writeError(w, http.StatusNotFound, "BACKEND_NOT_FOUND", err.Error())
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
		return
	}
	s.lg.Info("backend drained by an operator", zap.String("backend", id), zap.Duration("timeout", timeout))
	writeJSON(w, http.StatusOK, s.drainDoc(id, &d))
}

func (s *Server) undrain(w http.ResponseWriter, r *http.Request) {
	id := observer.BackendID(r.PathValue("cluster"), r.PathValue("addr"))
	was := s.migr.Undrain(id)
	if was {
		s.lg.Info("backend undrained by an operator", zap.String("backend", id))
	}
	doc := s.drainDoc(id, nil)
	doc.WasDrained = &was
	writeJSON(w, http.StatusOK, doc)
}

// drainDoc describes backend id, drained by d (nil: not drained).
func (s *Server) drainDoc(id string, d *router.Drain) libapi.BackendDrain {
	cluster, addr, _ := observer.SplitBackendID(id)
	doc := libapi.BackendDrain{ID: id, Cluster: cluster, Addr: addr, Sessions: int(s.proxy.BackendSessions()[id])}
	if d != nil {
		since, deadline := d.Since.UTC(), d.Deadline.UTC()
		doc.Drained, doc.Since, doc.Deadline = true, &since, &deadline
	}
	return doc
}

func (s *Server) migrations(w http.ResponseWriter, _ *http.Request) {
	recent, totals := s.migr.Recent()
	doc := libapi.MigrationsDoc{Pending: s.migr.Pending(), Totals: totals, Recent: make([]libapi.Migration, 0, len(recent)), Drains: []libapi.BackendDrain{}}
	for _, ev := range recent {
		doc.Recent = append(doc.Recent, libapi.Migration{
			Time: ev.Time.UTC(), SessionID: ev.SessionID, Cluster: ev.Cluster,
			From: ev.From, To: ev.To, Reason: ev.Reason, Result: ev.Result,
			DurationMS: float64(ev.Duration.Microseconds()) / 1000, Error: ev.Error,
		})
	}
	for id, d := range s.migr.Drains() {
		doc.Drains = append(doc.Drains, s.drainDoc(id, &d))
	}
	slices.SortFunc(doc.Drains, func(a, b libapi.BackendDrain) int { return cmp.Compare(a.ID, b.ID) })
	writeJSON(w, http.StatusOK, doc)
}

// drainOf returns the drain of backend id, if the API knows migrations.
func (s *Server) drainOf(id string) (router.Drain, bool) {
	if s.migr == nil {
		return router.Drain{}, false
	}
	d, ok := s.migr.Drains()[id]
	return d, ok
}
