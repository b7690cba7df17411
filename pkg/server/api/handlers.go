package api

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
	libapi "github.com/switchyard-db/switchyard/lib/api"
	libconfig "github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/observer"
)

// redacted replaces secrets in GET /api/v1/config.
const redacted = libconfig.RedactedSecret

// maxOverrideBody bounds PUT /api/v1/health/override: {"reason":"..."}.
const maxOverrideBody = 64 << 10

// readBody reads a request body of at most limit bytes. Too large a body is
// answered with 413 and false.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "TOO_LARGE", fmt.Sprintf("request body larger than %d bytes", tooLarge.Limit))
		return nil, false
	case err != nil:
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "reading the request body: "+err.Error())
		return nil, false
	}
	return body, true
}

func (s *Server) livez(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok\n")
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if ok, reason := s.proxy.Ready(); !ok {
		writeError(w, http.StatusServiceUnavailable, "NOT_READY", reason)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok\n")
}

func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	h, status := s.healthDoc()
	writeJSON(w, status, h)
}

// healthDoc is the Health document and the status GET /api/v1/health
// answers with: 503 when unhealthy, for load balancers.
func (s *Server) healthDoc() (libapi.Health, int) {
	healthy, reason := s.proxy.Health()
	h := libapi.Health{Status: libapi.StatusHealthy, ConfigChecksum: s.cfg.Checksum(), Clusters: map[string]string{},
		Components: s.proxy.Components(), CoordinationMode: "single-node"}
	if s.coord != nil {
		h.CoordinationMode = s.coord.Mode()
	}
	if h.CoordinationMode == "single-node" {
		h.Warnings = append(h.Warnings, "running as a single node: no [coordination] etcd-endpoints, so this node's own probes decide alone")
	}
	for _, c := range s.clusterList() {
		h.Clusters[c.Name] = c.State
		switch c.State {
		case string(observer.StateStale):
			h.Warnings = append(h.Warnings, fmt.Sprintf("cluster %s is stale: %s", c.Name, c.LastError))
		case stateFailed:
			h.Warnings = append(h.Warnings, fmt.Sprintf("cluster %s failed to start: %s", c.Name, c.LastError))
		}
	}
	if st := s.cfg.Status(); st.LastResult == "error" {
		h.Warnings = append(h.Warnings, "the last config reload failed: "+st.LastError)
	}
	status := http.StatusOK
	if !healthy {
		h.Status, h.UnhealthyReason = libapi.StatusUnhealthy, reason
		status = http.StatusServiceUnavailable
	}
	return h, status
}

// overrideDone answers a successful change of the override: 200, because the
// request succeeded, with the health it led to (unhealthy, after a PUT).
func (s *Server) overrideDone(w http.ResponseWriter) {
	h, _ := s.healthDoc()
	writeJSON(w, http.StatusOK, h)
}

func (s *Server) setOverride(w http.ResponseWriter, r *http.Request) {
	var o libapi.Override
	body, ok := readBody(w, r, maxOverrideBody)
	if !ok {
		return
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &o); err != nil {
			writeError(w, http.StatusBadRequest, "BAD_REQUEST", "body must be JSON like {\"reason\":\"...\"}: "+err.Error())
			return
		}
	}
	if o.Reason == "" {
		o.Reason = "marked unhealthy by an operator"
	}
	s.proxy.SetOverride(o.Reason)
	s.overrideDone(w)
}

func (s *Server) clearOverride(w http.ResponseWriter, _ *http.Request) {
	s.proxy.ClearOverride()
	s.overrideDone(w)
}

// stateFailed is shown for a configured cluster whose runtime could not be
// built.
const stateFailed = "failed"

// clusterList merges the topology with the config: draining clusters are
// only in the topology, failed ones only in the config.
func (s *Server) clusterList() []libapi.Cluster {
	topo := s.proxy.Topology()
	cfg := s.cfg.Current()
	sessions := map[string]int{}
	for _, in := range s.proxy.SessionDocs() {
		if in.Cluster != "" {
			sessions[in.Cluster]++
		}
	}
	buildErrs := s.proxy.BuildErrors()
	var out []libapi.Cluster
	seen := map[string]bool{}
	for name, v := range topo.Clusters {
		seen[name] = true
		c := libapi.Cluster{
			Name:         name,
			State:        string(v.State),
			Source:       v.Source,
			EtcdRevision: v.Revision,
			LastError:    v.LastError,
			Sessions:     sessions[name],
			Generation:   v.Generation,
			Labels:       v.Labels,
			UpdatedAt:    v.UpdatedAt,
		}
		if e := buildErrs[name]; e != "" {
			c.LastError = "rebuild failing, previous runtime serving: " + e
		}
		for _, b := range v.Backends {
			c.BackendsTotal++
			if b.Health.Healthy {
				c.BackendsHealthy++
			}
		}
		if cc := cfg.Cluster(name); cc != nil {
			c.EtcdEndpoints, c.TopologyPrefix = cc.EtcdEndpoints, cc.TopologyPrefix
		}
		out = append(out, c)
	}
	for _, cc := range cfg.Clusters {
		if seen[cc.Name] {
			continue
		}
		c := libapi.Cluster{Name: cc.Name, State: stateFailed, Source: observer.SourceStatic, LastError: buildErrs[cc.Name],
			EtcdEndpoints: cc.EtcdEndpoints, TopologyPrefix: cc.TopologyPrefix, Labels: cc.Labels}
		if cc.UsesEtcd() {
			c.Source = observer.SourceEtcd
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b libapi.Cluster) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (s *Server) clusters(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.clusterList())
}

func (s *Server) cluster(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	for _, c := range s.clusterList() {
		if c.Name == name {
			writeJSON(w, http.StatusOK, c)
			return
		}
	}
	writeError(w, http.StatusNotFound, "CLUSTER_NOT_FOUND", fmt.Sprintf("no cluster named %q", name))
}

func (s *Server) clusterBackends(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	v := s.proxy.Topology().Cluster(name)
	if v == nil {
		if s.cfg.Current().Cluster(name) != nil {
			writeJSON(w, http.StatusOK, []libapi.Backend{}) // configured but not running
			return
		}
		writeError(w, http.StatusNotFound, "CLUSTER_NOT_FOUND", fmt.Sprintf("no cluster named %q", name))
		return
	}
	writeJSON(w, http.StatusOK, s.backendList([]*observer.ClusterView{v}))
}

func (s *Server) backends(w http.ResponseWriter, r *http.Request) {
	topo := s.proxy.Topology()
	views := make([]*observer.ClusterView, 0, len(topo.Clusters))
	for _, v := range topo.Clusters {
		views = append(views, v)
	}
	slices.SortFunc(views, func(a, b *observer.ClusterView) int { return strings.Compare(a.Name, b.Name) })
	writeJSON(w, http.StatusOK, s.backendList(views))
}

func (s *Server) backendList(views []*observer.ClusterView) []libapi.Backend {
	sessions := s.proxy.BackendSessions()
	probes := s.proxy.LastProbes()
	out := []libapi.Backend{}
	for _, v := range views {
		for _, b := range v.Backends {
			ab := libapi.Backend{
				ID:         b.ID,
				Cluster:    b.Cluster,
				Addr:       b.Addr,
				StatusPort: b.StatusPort,
				Version:    b.Version,
				Healthy:    b.Health.Healthy,
				Reason:     b.Health.Reason,
				Labels:     b.Labels,
				Sessions:   int(sessions[b.ID]),
			}
			if b.Metrics.HasCPU {
				cpu := b.Metrics.CPU
				ab.CPU = &cpu
			}
			if b.Metrics.HasMemory {
				mem := b.Metrics.Memory
				ab.Memory = &mem
			}
			if t := b.Health.LastProbe; !t.IsZero() || !probes[b.ID].IsZero() {
				if p := probes[b.ID]; p.After(t) {
					t = p
				}
				ab.LastProbe = &t
			}
			if d, ok := s.drainOf(b.ID); ok {
				deadline := d.Deadline.UTC()
				ab.Drained, ab.DrainDeadline = true, &deadline
			}
			out = append(out, ab)
		}
	}
	return out
}

func (s *Server) sessions(w http.ResponseWriter, _ *http.Request) {
	out := s.proxy.SessionDocs()
	slices.SortFunc(out, func(a, b libapi.Session) int { return cmp.Compare(a.ID, b.ID) })
	writeJSON(w, http.StatusOK, out)
}

// effectiveConfig is the config in force with defaults filled in and
// secrets replaced, as a TOML document: a setting changed in the file that
// needs a restart shows its running value, not the file's.
func (s *Server) effectiveConfig() ([]byte, error) {
	cfg := *s.cfg.Effective()
	if cfg.API.Token != "" {
		cfg.API.Token = redacted
	}
	if cfg.API.ReadToken != "" {
		cfg.API.ReadToken = redacted
	}
	if cfg.HealthCheck.SQLPassword != "" {
		cfg.HealthCheck.SQLPassword = redacted
	}
	cfg.Clusters = slices.Clone(cfg.Clusters)
	for i := range cfg.Clusters {
		if cfg.Clusters[i].MigrationPassword != "" {
			cfg.Clusters[i].MigrationPassword = redacted
		}
	}
	cfg.Shadows = slices.Clone(cfg.Shadows)
	for i := range cfg.Shadows {
		if cfg.Shadows[i].Password != "" {
			cfg.Shadows[i].Password = redacted
		}
	}
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(cfg); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// pendingComment marks, at the top of the TOML, the settings whose new
// value waits for a restart. Keys only: a value may be a secret.
func pendingComment(keys []string) string {
	if len(keys) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("# The running config. These settings were changed in the config file but take\n")
	b.WriteString("# effect only after a restart; their running value is shown below:\n")
	for _, k := range keys {
		b.WriteString("#   " + k + " (pending restart)\n")
	}
	b.WriteString("\n")
	return b.String()
}

func (s *Server) getConfig(w http.ResponseWriter, r *http.Request) {
	text, err := s.effectiveConfig()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "INTERNAL", err.Error())
		return
	}
	pending := s.cfg.Status().NeedsRestart
	w.Header().Set("X-Config-Checksum", s.cfg.Checksum())
	if len(pending) > 0 {
		w.Header().Set("X-Config-Pending-Restart", strings.Join(pending, ", "))
	}
	if strings.Contains(r.Header.Get("Accept"), "application/json") {
		// The same keys as the TOML file, not Go field names.
		var doc map[string]any
		if _, err := toml.Decode(string(text), &doc); err != nil {
			writeError(w, http.StatusInternalServerError, "INTERNAL", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, doc)
		return
	}
	w.Header().Set("Content-Type", "application/toml")
	_, _ = io.WriteString(w, pendingComment(pending))
	_, _ = w.Write(text)
}

func (s *Server) putConfig(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r, maxConfigBody)
	if !ok {
		return
	}
	if err := s.cfg.Set(body); err != nil {
		if errors.Is(err, libconfig.ErrInvalid) {
			ce := libapi.ConfigErrors{Error: libapi.Error{Code: "INVALID_CONFIG", Message: "the config was rejected; the running config is unchanged"}}
			ce.Errors = splitErrors(err)
			writeJSON(w, http.StatusBadRequest, ce)
			return
		}
		// Applied, but not completely (a route port could not be opened),
		// or the file could not be written: the status says which.
		writeJSON(w, http.StatusInternalServerError, libapi.ConfigErrors{
			Error:  libapi.Error{Code: "APPLY_FAILED", Message: err.Error()},
			Errors: splitErrors(err),
		})
		return
	}
	writeJSON(w, http.StatusOK, s.status())
}

func splitErrors(err error) []string {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		var out []string
		for _, e := range joined.Unwrap() {
			out = append(out, e.Error())
		}
		return out
	}
	return []string{err.Error()}
}

func (s *Server) status() libapi.ConfigStatus {
	st := s.cfg.Status()
	return libapi.ConfigStatus{
		Checksum:     st.Checksum,
		Path:         st.Path,
		LastReload:   st.LastReload,
		LastResult:   st.LastResult,
		LastSource:   st.LastSource,
		LastError:    st.LastError,
		LastSuccess:  st.LastSuccess,
		NeedsRestart: st.NeedsRestart,
		Reloads:      st.Reloads,
		Failures:     st.Failures,
	}
}

func (s *Server) configStatus(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.status())
}
