package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"go.uber.org/zap"

	libapi "github.com/switchyard-db/switchyard/lib/api"
)

// DigestQuery is what GET /api/v1/digests asks for.
type DigestQuery struct {
	Cluster string
	Sort    string
	Limit   int
}

// ErrBadDigestQuery is wrapped by Digests errors that are the caller's fault
// (an unknown sort key).
var ErrBadDigestQuery = errors.New("bad digest query")

// Digests is the digest tables as the API reads and resets them.
type Digests interface {
	Digests(q DigestQuery) (libapi.DigestList, error)
	// ResetDigests empties the tables of one cluster, or of all with "".
	ResetDigests(cluster string)
}

// SetDigests enables GET and DELETE /api/v1/digests. Call it before Start.
func (s *Server) SetDigests(d Digests) {
	s.route("/api/v1/digests", handlers{
		"GET":    s.require(RoleRead, func(w http.ResponseWriter, r *http.Request) { s.listDigests(d, w, r) }),
		"DELETE": s.require(RoleAdmin, func(w http.ResponseWriter, r *http.Request) { s.resetDigests(d, w, r) }),
	})
}

// defaultDigestLimit keeps an unqualified GET small enough to read.
const defaultDigestLimit = 100

func (s *Server) listDigests(d Digests, w http.ResponseWriter, r *http.Request) {
	q := DigestQuery{Cluster: r.URL.Query().Get("cluster"), Sort: r.URL.Query().Get("sort"), Limit: defaultDigestLimit}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "BAD_REQUEST", fmt.Sprintf("limit %q: want a whole number, 0 for all", v))
			return
		}
		q.Limit = n
	}
	list, err := d.Digests(q)
	if errors.Is(err, ErrBadDigestQuery) {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "INTERNAL", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, list)
}

// knownCluster reports whether the running config names the cluster. A GET
// may name a cluster removed since (its rows stay until a reset).
func (s *Server) knownCluster(name string) bool {
	return s.cfg.Current().Cluster(name) != nil
}

func (s *Server) resetDigests(d Digests, w http.ResponseWriter, r *http.Request) {
	cluster := r.URL.Query().Get("cluster")
	if cluster != "" && !s.knownCluster(cluster) {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "no such cluster: "+cluster)
		return
	}
	d.ResetDigests(cluster)
	s.lg.Info("digest tables reset", zap.String("cluster", cluster), zap.String("remote", r.RemoteAddr))
	w.WriteHeader(http.StatusNoContent)
}
