package api

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	libapi "github.com/switchyard-db/switchyard/lib/api"
	libconfig "github.com/switchyard-db/switchyard/lib/config"
	cfgmgr "github.com/switchyard-db/switchyard/pkg/manager/config"
	"github.com/switchyard-db/switchyard/pkg/observer"
	"go.uber.org/zap/zaptest"
)

// token is the admin token of every fixture, readToken its read token.
const (
	token     = "s3cret"
	readToken = "l00k-only"
)

// fixtureAPI is the [api] section of every fixture.
func fixtureAPI() libconfig.API {
	return libconfig.API{Addr: "127.0.0.1:3080", Token: token, ReadToken: readToken,
		PublicEndpoints: slices.Clone(libconfig.DefaultPublicEndpoints)}
}

// t0 is "now" in the fixed data.
var t0 = time.Date(2024, 5, 17, 9, 30, 0, 0, time.UTC)

// configTOML is the config file the fixture starts with: east and west are
// running, broken is configured but its runtime could not be built, and
// south (draining in the topology) was removed from it.
const configTOML = `[proxy]
addr = "127.0.0.1:6000"
default-cluster = "east"

[api]
addr = "127.0.0.1:3080"
token = "s3cret"
read-token = "l00k-only"

[[cluster]]
name = "east"
etcd-endpoints = ["127.0.0.1:2379"]
labels = { zone = "a" }

[[cluster]]
name = "west"
etcd-endpoints = ["127.0.0.1:2381"]
topology-prefix = "/west/topology/tidb"

[[cluster]]
name = "broken"
etcd-endpoints = ["127.0.0.1:2383"]
labels = { zone = "c" }
`

// badConfigTOML has an unknown key on line 3.
const badConfigTOML = `[proxy]
addr = "127.0.0.1:6000"
adr = "127.0.0.1:6001"

[[cluster]]
name = "east"
etcd-endpoints = ["127.0.0.1:2379"]
`

// newConfigTOML is a valid replacement: broken is gone and proxy.addr
// changed, which only a restart applies.
const newConfigTOML = `[proxy]
addr = "127.0.0.1:7000"

[api]
token = "s3cret"
read-token = "l00k-only"

[[cluster]]
name = "east"
etcd-endpoints = ["127.0.0.1:2379"]
`

const brokenErr = "etcd client for 127.0.0.1:2383: tls: failed to load the CA"

func fixedTopology() *observer.Topology {
	east := &observer.ClusterView{
		Name: "east", Generation: 7, State: observer.StateReady, Source: observer.SourceEtcd,
		Revision: 41, Labels: map[string]string{"zone": "a"}, UpdatedAt: t0.Add(-time.Second),
		Backends: []*observer.Backend{
			{
				ID: "east/10.0.0.1:4000", Cluster: "east", Addr: "10.0.0.1:4000", StatusPort: 10080,
				Version: "8.0.11-TiDB-v7.5.0", Labels: map[string]string{"zone": "a"},
				Health: observer.Health{Healthy: true, LastProbe: t0.Add(-2 * time.Second)},
				Metrics: observer.Metrics{CPU: 0.42, HasCPU: true, Memory: 0.613, HasMemory: true,
					Source: "prometheus", UpdatedAt: t0.Add(-3 * time.Second)},
			},
			{
				ID: "east/10.0.0.2:4000", Cluster: "east", Addr: "10.0.0.2:4000", StatusPort: 10080,
				Version: "8.0.11-TiDB-v7.5.0",
				Health: observer.Health{Reason: "SQL handshake: dial tcp 10.0.0.2:4000: connect: connection refused",
					LastProbe: t0.Add(-2 * time.Second), Failures: 3},
			},
		},
	}
	west := &observer.ClusterView{
		Name: "west", Generation: 3, State: observer.StateStale, Source: observer.SourceEtcd,
		Revision: 12, LastError: "etcd 127.0.0.1:2381 unreachable: context deadline exceeded",
		UpdatedAt: t0.Add(-5 * time.Minute),
		Backends: []*observer.Backend{{
			ID: "west/10.0.1.1:3306", Cluster: "west", Addr: "10.0.1.1:3306",
			Health: observer.Health{Healthy: true, Reason: "not probed yet"},
		}},
	}
	south := &observer.ClusterView{
		Name: "south", Generation: 2, State: observer.StateDraining, Source: observer.SourceStatic,
		UpdatedAt: t0.Add(-30 * time.Second),
		Backends: []*observer.Backend{{
			ID: "south/10.0.2.1:4000", Cluster: "south", Addr: "10.0.2.1:4000",
			Health: observer.Health{Healthy: true, LastProbe: t0.Add(-time.Second)},
		}},
	}
	return &observer.Topology{Version: 19, Clusters: map[string]*observer.ClusterView{
		"east": east, "west": west, "south": south,
	}}
}

// fixedSessions are out of order on purpose: the API sorts them by ID.
func fixedSessions() []libapi.Session {
	return []libapi.Session{
		{ID: 7, ClientAddr: "10.1.0.6:40000", User: "batch", Cluster: "east", Backend: "east/10.0.0.2:4000",
			InTransaction: true, Since: t0.Add(-5 * time.Minute).UTC(),
			NotMigratableReason: "in a transaction"},
		{ID: 1, ClientAddr: "10.1.0.5:51234", User: "app", DB: "shop", Cluster: "east", Backend: "east/10.0.0.1:4000", Migratable: true,
			Since: time.Date(2024, 5, 17, 9, 29, 18, 123000000, time.UTC)},
		{ID: 3, ClientAddr: "[::1]:60000", User: "root", Cluster: "south", Backend: "south/10.0.2.1:4000",
			Since: t0.Add(-26 * time.Hour).UTC()},
		// Still in its handshake: no cluster or backend yet.
		{ID: 12, ClientAddr: "10.1.0.7:33000", Since: t0.UTC()},
	}
}

// fakeProxy is a Proxy with fixed data and an honest override.
type fakeProxy struct {
	mu          sync.Mutex
	topo        *observer.Topology
	sessions    []libapi.Session
	backendSess map[string]int64
	buildErrs   map[string]string
	lastProbes  map[string]time.Time
	ready       bool
	override    *string
}

var _ Proxy = (*fakeProxy)(nil)

func newFakeProxy() *fakeProxy {
	return &fakeProxy{
		topo:     fixedTopology(),
		sessions: fixedSessions(),
		backendSess: map[string]int64{
			"east/10.0.0.1:4000": 1, "east/10.0.0.2:4000": 1, "south/10.0.2.1:4000": 1,
		},
		buildErrs: map[string]string{"broken": brokenErr},
		ready:     true,
	}
}

func (p *fakeProxy) Topology() *observer.Topology {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.topo
}

func (p *fakeProxy) SessionDocs() []libapi.Session {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]libapi.Session(nil), p.sessions...)
}

func (p *fakeProxy) LastProbes() map[string]time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]time.Time, len(p.lastProbes))
	for k, v := range p.lastProbes {
		out[k] = v
	}
	return out
}

func (p *fakeProxy) setLastProbe(id string, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lastProbes == nil {
		p.lastProbes = map[string]time.Time{}
	}
	p.lastProbes[id] = at
}

func (p *fakeProxy) BackendSessions() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int64, len(p.backendSess))
	for k, v := range p.backendSess {
		out[k] = v
	}
	return out
}

func (p *fakeProxy) BuildErrors() map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]string, len(p.buildErrs))
	for k, v := range p.buildErrs {
		out[k] = v
	}
	return out
}

func (p *fakeProxy) Health() (bool, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.override != nil {
		return false, *p.override
	}
	return true, ""
}

func (p *fakeProxy) Components() map[string]libapi.Component {
	return map[string]libapi.Component{
		"config":       {State: "healthy"},
		"sql":          {State: "healthy"},
		"cluster/east": {State: "healthy"},
		"cluster/west": {State: "abnormal", Reason: "etcd unreachable"},
	}
}

func (p *fakeProxy) Ready() (bool, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.ready {
		return false, "starting: listeners are not up yet"
	}
	return true, ""
}

func (p *fakeProxy) SetOverride(reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.override = &reason
}

func (p *fakeProxy) ClearOverride() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.override = nil
}

func (p *fakeProxy) setReady(ready bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ready = ready
}

func (p *fakeProxy) setBuildError(cluster, err string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buildErrs[cluster] = err
}

// fixture is an API over a fake proxy and a real config manager whose config
// file lives in a temporary directory.
type fixture struct {
	proxy *fakeProxy
	cfg   *cfgmgr.Manager
	path  string
	srv   *Server
	migr  *fakeMigrations
}

type fixtureOpt func(*fixtureOpts)

type fixtureOpts struct{ noMetrics, migrations bool }

// withMigrations enables the migration endpoints over a fakeMigrations.
func withMigrations(o *fixtureOpts) { o.migrations = true }

// withoutMetrics builds the API without a metrics handler.
func withoutMetrics(o *fixtureOpts) { o.noMetrics = true }

// metricsText is what the fixture's metrics handler serves.
const metricsText = "# TYPE switchyard_up gauge\nswitchyard_up 1\n"

func newFixture(t *testing.T, opts ...fixtureOpt) *fixture {
	t.Helper()
	var o fixtureOpts
	for _, opt := range opts {
		opt(&o)
	}
	lg := zaptest.NewLogger(t)
	path := filepath.Join(t.TempDir(), "switchyard.toml")
	require.NoError(t, os.WriteFile(path, []byte(configTOML), 0o600))
	cm := cfgmgr.New(lg, path)
	_, err := cm.Load()
	require.NoError(t, err)
	var metrics http.Handler
	if !o.noMetrics {
		metrics = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			_, _ = io.WriteString(w, metricsText)
		})
	}
	p := newFakeProxy()
	f := &fixture{proxy: p, cfg: cm, path: path, srv: New(lg, p, cm, metrics, NewAuth(fixtureAPI()))}
	if o.migrations {
		f.migr = newFakeMigrations(p)
		f.srv.SetMigrations(f.migr)
	}
	return f
}

// request is one call to the API. Without a header it is sent with the read
// token, unless anonymous is set: the auth tests say exactly what they send.
type request struct {
	method    string
	path      string
	header    map[string]string
	body      string
	anonymous bool
}

func (r request) withToken(tok string) request {
	h := map[string]string{"Authorization": "Bearer " + tok}
	for k, v := range r.header {
		h[k] = v
	}
	r.header = h
	return r
}

func (f *fixture) do(t *testing.T, r request) *httptest.ResponseRecorder {
	t.Helper()
	method := r.method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req := httptest.NewRequest(method, r.path, body)
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	if _, ok := r.header["Authorization"]; !ok && !r.anonymous {
		req.Header.Set("Authorization", "Bearer "+readToken)
	}
	rec := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(rec, req)
	return rec
}

// fileContent is what the config file holds now.
func (f *fixture) fileContent(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(f.path)
	require.NoError(t, err)
	return string(data)
}
