package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	libapi "github.com/switchyard-db/switchyard/lib/api"
	cfgmgr "github.com/switchyard-db/switchyard/pkg/manager/config"
	"github.com/switchyard-db/switchyard/test/testenv"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// goldenHeaders are the response headers a golden file records, when set.
var goldenHeaders = []string{"Content-Type", "Allow", "WWW-Authenticate", "X-Config-Checksum"}

// Placeholders for the values that genuinely differ between runs.
const (
	placeholderPath = "<config file>"
	placeholderNow  = "<during the test>"
)

type goldenCase struct {
	name  string
	opts  []fixtureOpt
	setup func(t *testing.T, f *fixture)
	req   request
	// status is asserted before the golden comparison, so that -update
	// cannot bless a wrong one.
	status int
	// variable lists the JSON fields whose values differ between runs: "path"
	// (the temporary config file) and the times the config manager records
	// (last_reload, last_success). Each must be present once; it is checked
	// and replaced by a placeholder. Every other byte is compared as is.
	variable []string
	check    func(t *testing.T, f *fixture)
}

func putConfig(body string) request {
	return request{method: http.MethodPut, path: "/api/v1/config", body: body}.withToken(token)
}

func failPut(t *testing.T, f *fixture) {
	rec := f.do(t, putConfig(badConfigTOML))
	require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
}

func requireFileUnchanged(t *testing.T, f *fixture) {
	require.Equal(t, configTOML, f.fileContent(t), "a rejected config must not touch the file")
	require.Equal(t, configTOML, string(f.cfg.Raw()), "a rejected config must not be applied")
}

func goldenCases() []goldenCase {
	return append([]goldenCase{
		{name: "livez", req: request{path: "/livez"}, status: http.StatusOK},
		{name: "readyz", req: request{path: "/readyz"}, status: http.StatusOK},
		{
			name:   "readyz_not_ready",
			setup:  func(_ *testing.T, f *fixture) { f.proxy.setReady(false) },
			req:    request{path: "/readyz"},
			status: http.StatusServiceUnavailable,
		},
		{name: "health", req: request{path: "/api/v1/health"}, status: http.StatusOK},
		{
			name: "health_unhealthy",
			setup: func(t *testing.T, f *fixture) {
				failPut(t, f)
				rec := f.do(t, request{method: http.MethodPut, path: "/api/v1/health/override",
					body: `{"reason":"upgrade to v2"}`}.withToken(token))
				require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			},
			req:    request{path: "/api/v1/health"},
			status: http.StatusServiceUnavailable,
		},
		{name: "clusters", req: request{path: "/api/v1/clusters"}, status: http.StatusOK},
		{name: "cluster_east", req: request{path: "/api/v1/clusters/east"}, status: http.StatusOK},
		{name: "cluster_broken", req: request{path: "/api/v1/clusters/broken"}, status: http.StatusOK},
		{name: "cluster_nope", req: request{path: "/api/v1/clusters/nope"}, status: http.StatusNotFound},
		{name: "cluster_east_backends", req: request{path: "/api/v1/clusters/east/backends"}, status: http.StatusOK},
		{name: "cluster_broken_backends", req: request{path: "/api/v1/clusters/broken/backends"}, status: http.StatusOK},
		{name: "cluster_south_backends", req: request{path: "/api/v1/clusters/south/backends"}, status: http.StatusOK},
		{name: "cluster_nope_backends", req: request{path: "/api/v1/clusters/nope/backends"}, status: http.StatusNotFound},
		{name: "backends", req: request{path: "/api/v1/backends"}, status: http.StatusOK},
		{name: "sessions", req: request{path: "/api/v1/sessions"}, status: http.StatusOK},
		{name: "config_toml", req: request{path: "/api/v1/config"}, status: http.StatusOK},
		{
			name:   "config_json",
			req:    request{path: "/api/v1/config", header: map[string]string{"Accept": "application/json"}},
			status: http.StatusOK,
		},
		{
			name:     "config_status",
			req:      request{path: "/api/v1/config/status"},
			status:   http.StatusOK,
			variable: []string{"path"},
		},
		{
			name:     "config_status_after_failed_put",
			setup:    failPut,
			req:      request{path: "/api/v1/config/status"},
			status:   http.StatusOK,
			variable: []string{"path", "last_reload"},
		},
		{
			name:   "put_config_invalid",
			req:    putConfig(badConfigTOML),
			status: http.StatusBadRequest,
			check:  requireFileUnchanged,
		},
		{
			name:     "put_config_ok",
			req:      putConfig(newConfigTOML),
			status:   http.StatusOK,
			variable: []string{"path", "last_reload", "last_success"},
			check: func(t *testing.T, f *fixture) {
				require.Equal(t, newConfigTOML, f.fileContent(t))
				require.Equal(t, newConfigTOML, string(f.cfg.Raw()))
				require.Equal(t, "127.0.0.1:7000", f.cfg.Current().Proxy.Addr)
			},
		},
		{
			name:   "put_config_too_large",
			req:    putConfig(strings.Repeat("#", maxConfigBody+1)),
			status: http.StatusRequestEntityTooLarge,
			check:  requireFileUnchanged,
		},
		{
			name:   "put_config_unauthorized",
			req:    request{method: http.MethodPut, path: "/api/v1/config", body: newConfigTOML, anonymous: true},
			status: http.StatusUnauthorized,
			check:  requireFileUnchanged,
		},
		{
			name: "override_put",
			req: request{method: http.MethodPut, path: "/api/v1/health/override",
				body: `{"reason":"upgrade to v2"}`}.withToken(token),
			status: http.StatusOK,
		},
		{
			name: "override_put_wrong_token",
			req: request{method: http.MethodPut, path: "/api/v1/health/override",
				body: `{"reason":"upgrade to v2"}`}.withToken("guess"),
			status: http.StatusUnauthorized,
			check: func(t *testing.T, f *fixture) {
				healthy, _ := f.proxy.Health()
				require.True(t, healthy, "a refused request must not set the override")
			},
		},
		{
			name:   "override_delete",
			setup:  func(_ *testing.T, f *fixture) { f.proxy.SetOverride("upgrade to v2") },
			req:    request{method: http.MethodDelete, path: "/api/v1/health/override"}.withToken(token),
			status: http.StatusOK,
		},
		{name: "method_post_clusters", req: request{method: http.MethodPost, path: "/api/v1/clusters"}, status: http.StatusMethodNotAllowed},
		{name: "method_delete_config", req: request{method: http.MethodDelete, path: "/api/v1/config"}, status: http.StatusMethodNotAllowed},
		{name: "method_get_override", req: request{path: "/api/v1/health/override"}, status: http.StatusMethodNotAllowed},
		{name: "unknown_path", req: request{path: "/api/v1/nope"}, status: http.StatusNotFound},
		{name: "unknown_nested_path", req: request{path: "/api/v1/clusters/east/backends/10.0.0.1:4000"}, status: http.StatusNotFound},
		{name: "metrics", req: request{path: "/metrics"}, status: http.StatusOK},
		{name: "metrics_absent", opts: []fixtureOpt{withoutMetrics}, req: request{path: "/metrics"}, status: http.StatusNotFound},
	}, migrationGoldenCases()...)
}

// TestGolden compares whole answers (status, the headers that matter, body)
// with testdata/<name>.golden. Regenerate with
// go test ./pkg/server/api -run Golden -update
func TestGolden(t *testing.T) {
	for _, c := range goldenCases() {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, c.opts...)
			before := time.Now().Round(0)
			if c.setup != nil {
				c.setup(t, f)
			}
			rec := f.do(t, c.req)
			after := time.Now().Round(0)
			require.Equal(t, c.status, rec.Code, rec.Body.String())
			body := rec.Body.String()
			for _, field := range c.variable {
				body = replaceVariable(t, body, field, f.path, before, after)
			}
			compareGolden(t, c.name, render(rec, body))
			if c.check != nil {
				c.check(t, f)
			}
		})
	}
}

// replaceVariable checks one run-dependent JSON field and replaces its value
// with a placeholder.
func replaceVariable(t *testing.T, body, field, path string, before, after time.Time) string {
	t.Helper()
	re := regexp.MustCompile(`"` + regexp.QuoteMeta(field) + `": "([^"]*)"`)
	m := re.FindAllStringSubmatchIndex(body, -1)
	require.Len(t, m, 1, "field %q in %s", field, body)
	value := body[m[0][2]:m[0][3]]
	var placeholder string
	switch field {
	case "path":
		require.Equal(t, path, value)
		placeholder = placeholderPath
	case "last_reload", "last_success":
		at, err := time.Parse(time.RFC3339Nano, value)
		require.NoError(t, err)
		require.False(t, at.Before(before) || at.After(after), "%s %s not within the test (%s .. %s)", field, at, before, after)
		placeholder = placeholderNow
	default:
		t.Fatalf("no rule for variable field %q", field)
	}
	return body[:m[0][2]] + placeholder + body[m[0][3]:]
}

func render(rec *httptest.ResponseRecorder, body string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP %d %s\n", rec.Code, http.StatusText(rec.Code))
	for _, h := range goldenHeaders {
		if v := rec.Header().Get(h); v != "" {
			fmt.Fprintf(&b, "%s: %s\n", h, v)
		}
	}
	b.WriteString("\n")
	b.WriteString(body)
	return b.String()
}

func compareGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run with -update to create it")
	require.Equal(t, string(want), got)
}

// TestGoldenFilesAreUsed catches golden files left behind by a renamed case.
func TestGoldenFilesAreUsed(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.golden"))
	require.NoError(t, err)
	var names []string
	for _, c := range goldenCases() {
		names = append(names, c.name)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".golden")
		require.True(t, slices.Contains(names, name), "%s belongs to no case", file)
	}
}

// A rejected PUT leaves the file and the running config alone and says why
// with the line; an accepted one is written, applied and served.
func TestPutConfig(t *testing.T) {
	f := newFixture(t)
	oldChecksum := f.cfg.Checksum()

	rec := f.do(t, putConfig(badConfigTOML))
	require.Equal(t, http.StatusBadRequest, rec.Code)
	var ce libapi.ConfigErrors
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &ce))
	require.Equal(t, "INVALID_CONFIG", ce.Code)
	require.Len(t, ce.Errors, 1)
	require.Contains(t, ce.Errors[0], "line 3: unknown key proxy.adr")
	requireFileUnchanged(t, f)
	rec = f.do(t, request{path: "/api/v1/config"})
	require.Equal(t, oldChecksum, rec.Header().Get("X-Config-Checksum"))

	var st libapi.ConfigStatus
	rec = f.do(t, request{path: "/api/v1/config/status"})
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &st))
	require.Equal(t, "error", st.LastResult)
	require.Equal(t, "api", st.LastSource)
	require.Contains(t, st.LastError, "line 3: unknown key proxy.adr")
	require.Equal(t, oldChecksum, st.Checksum)

	rec = f.do(t, putConfig(newConfigTOML))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	st = libapi.ConfigStatus{} // omitted fields must read as empty
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &st))
	require.Equal(t, "ok", st.LastResult)
	require.Empty(t, st.LastError)
	require.Equal(t, cfgmgr.Checksum([]byte(newConfigTOML)), st.Checksum)
	require.Equal(t, []string{"proxy.addr"}, st.NeedsRestart)
	require.Equal(t, 2, st.Reloads)
	require.Equal(t, 1, st.Failures)
	require.Equal(t, newConfigTOML, f.fileContent(t))

	// GET shows the config in force: the new addresses need a restart, so
	// the running ones are shown, and marked pending; the cluster change
	// (a live setting) is shown.
	rec = f.do(t, request{path: "/api/v1/config"})
	require.Equal(t, st.Checksum, rec.Header().Get("X-Config-Checksum"))
	require.Equal(t, "proxy.addr", rec.Header().Get("X-Config-Pending-Restart"))
	body := rec.Body.String()
	require.Contains(t, body, `addr = "127.0.0.1:6000"`)
	require.Contains(t, body, `addr = "127.0.0.1:3080"`)
	require.NotContains(t, body, `addr = "127.0.0.1:7000"`)
	require.Contains(t, body, "#   proxy.addr (pending restart)\n")
	require.NotContains(t, body, `name = "broken"`)
	require.Contains(t, body, `token = "<redacted>"`)
	require.NotContains(t, body, token)
	rec = f.do(t, request{path: "/api/v1/config", header: map[string]string{"Accept": "application/json"}})
	require.Equal(t, "proxy.addr", rec.Header().Get("X-Config-Pending-Restart"))
	require.Contains(t, rec.Body.String(), `"addr": "127.0.0.1:6000"`)

	// broken is no longer configured, and it is not in the topology.
	rec = f.do(t, request{path: "/api/v1/clusters/broken"})
	require.Equal(t, http.StatusNotFound, rec.Code)
}

// The tokens never leave the proxy, in either format.
func TestConfigRedactsToken(t *testing.T) {
	f := newFixture(t)
	for _, accept := range []string{"", "application/toml", "application/json"} {
		rec := f.do(t, request{path: "/api/v1/config", header: map[string]string{"Accept": accept}})
		require.Equal(t, http.StatusOK, rec.Code)
		require.NotContains(t, rec.Body.String(), token)
		require.NotContains(t, rec.Body.String(), readToken)
		require.Equal(t, 2, strings.Count(rec.Body.String(), "<redacted>"), "both tokens")
	}
	require.Equal(t, token, f.cfg.Current().API.Token, "redacting must not touch the running config")
	require.Equal(t, readToken, f.cfg.Current().API.ReadToken)
}

// A cluster whose rebuild fails keeps its previous runtime; the API says so.
func TestClusterRebuildFailing(t *testing.T) {
	f := newFixture(t)
	f.proxy.setBuildError("east", "etcd client: bad endpoint")
	var c libapi.Cluster
	rec := f.do(t, request{path: "/api/v1/clusters/east"})
	require.Equal(t, http.StatusOK, rec.Code)
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &c))
	require.Equal(t, "ready", c.State)
	require.Equal(t, "rebuild failing, previous runtime serving: etcd client: bad endpoint", c.LastError)
}

func TestStatusPage(t *testing.T) {
	f := newFixture(t)
	rec := f.do(t, request{path: "/"})
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, "text/html; charset=utf-8", rec.Header().Get("Content-Type"))
	require.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
	require.Contains(t, rec.Body.String(), "<html")

	rec = f.do(t, request{method: http.MethodPost, path: "/"})
	require.Equal(t, http.StatusMethodNotAllowed, rec.Code)
	require.Equal(t, "GET, HEAD", rec.Header().Get("Allow"))
}

func TestPprof(t *testing.T) {
	f := newFixture(t)
	rec := f.do(t, request{path: "/debug/pprof/"})
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), "goroutine")
	rec = f.do(t, request{path: "/debug/pprof/cmdline"})
	require.Equal(t, http.StatusOK, rec.Code)
}

// Start serves the same handler on a real listener; Close is idempotent and
// leaves no goroutine behind (goleak checks).
func TestStartClose(t *testing.T) {
	f := newFixture(t)
	require.Nil(t, f.srv.Addr())
	f.srv.Close() // before Start: nothing to do
	require.NoError(t, f.srv.Start(context.Background(), "127.0.0.1:0", nil))
	addr := f.srv.Addr()
	require.NotNil(t, addr)

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	req, err := http.NewRequest(http.MethodGet, "http://"+addr.String()+"/api/v1/clusters/nope", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+readToken)
	resp, err := client.Do(req)
	require.NoError(t, err)
	var e libapi.Error
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.Equal(t, "CLUSTER_NOT_FOUND", e.Code)

	f.srv.Close()
	f.srv.Close()
	_, err = client.Get("http://" + addr.String() + "/livez")
	require.Error(t, err, "closed")
}

// A request's context derives from Start's: when it ends, a handler still
// running sees its request cancelled.
func TestStartContextReachesRequests(t *testing.T) {
	f := newFixture(t)
	entered := make(chan struct{})
	f.srv.HandleInternal("/internal/v1/wait", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		select {
		case <-r.Context().Done():
			w.WriteHeader(http.StatusServiceUnavailable)
		case <-time.After(30 * time.Second):
			w.WriteHeader(http.StatusOK)
		}
	}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	require.NoError(t, f.srv.Start(ctx, "127.0.0.1:0", nil))
	defer f.srv.Close()

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 20 * time.Second}
	req, err := http.NewRequest(http.MethodGet, "http://"+f.srv.Addr().String()+"/internal/v1/wait", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	got := make(chan int, 1)
	go func() {
		resp, err := client.Do(req)
		if err != nil {
			got <- 0
			return
		}
		_ = resp.Body.Close()
		got <- resp.StatusCode
	}()
	select {
	case <-entered:
	case code := <-got:
		t.Fatalf("the request never reached the handler: %d", code)
	}
	cancel()
	require.Equal(t, http.StatusServiceUnavailable, <-got, "the handler did not see Start's context end")
}

// With [api] tls the API is HTTPS only.
func TestStartTLS(t *testing.T) {
	certs := testenv.NewCerts(t, "")
	cert, err := tls.LoadX509KeyPair(certs.ServerCert, certs.ServerKey)
	require.NoError(t, err)
	f := newFixture(t)
	require.NoError(t, f.srv.Start(context.Background(), "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}))
	defer f.srv.Close()
	addr := f.srv.Addr().String()

	secure := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: certs.CertPool(), MinVersion: tls.VersionTLS12}}}
	resp, err := secure.Get("https://" + addr + "/livez")
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)

	plain := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err = plain.Get("http://" + addr + "/livez")
	if err == nil {
		// Go's TLS server answers a plain HTTP request with a 400.
		require.NoError(t, resp.Body.Close())
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	}
}

// The topology is republished only when a verdict changes, so its probe
// times lag; the API shows the prober's own, newer time (issue 14: "last
// probe 8-9 s ago" with a 1 s interval). An older prober time (a backend
// whose runtime was just rebuilt) does not hide the topology's.
func TestBackendsShowLatestProbe(t *testing.T) {
	f := newFixture(t)
	f.proxy.setLastProbe("east/10.0.0.1:4000", t0.Add(-100*time.Millisecond))
	f.proxy.setLastProbe("east/10.0.0.2:4000", t0.Add(-time.Hour))
	rec := f.do(t, request{path: "/api/v1/backends"})
	require.Equal(t, http.StatusOK, rec.Code)
	var bs []libapi.Backend
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &bs))
	got := map[string]time.Time{}
	for _, b := range bs {
		if b.LastProbe != nil {
			got[b.ID] = *b.LastProbe
		}
	}
	require.True(t, got["east/10.0.0.1:4000"].Equal(t0.Add(-100*time.Millisecond)), "%v", got)
	require.True(t, got["east/10.0.0.2:4000"].Equal(t0.Add(-2*time.Second)), "%v", got)
}

// Nor does the health probe user's password.
func TestConfigRedactsProbePassword(t *testing.T) {
	f := newFixture(t)
	const pw = "pr0be-pw"
	rec := f.do(t, putConfig("[health-check]\nsql-user = \"prober\"\nsql-password = \""+pw+"\"\n"+newConfigTOML))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	for _, accept := range []string{"", "application/json"} {
		rec := f.do(t, request{path: "/api/v1/config", header: map[string]string{"Accept": accept}})
		require.Equal(t, http.StatusOK, rec.Code)
		require.NotContains(t, rec.Body.String(), pw)
		require.Contains(t, rec.Body.String(), "prober")
		require.Contains(t, rec.Body.String(), redacted)
	}
	require.Equal(t, pw, f.cfg.Current().HealthCheck.SQLPassword, "redacting must not touch the running config")
}

// A cluster's migration password never leaves the proxy either.
func TestConfigRedactsMigrationPassword(t *testing.T) {
	f := newFixture(t)
	const pw = "m1gr4te-pw"
	rec := f.do(t, putConfig(newConfigTOML+"migration-user = \"migrator\"\nmigration-password = \""+pw+"\"\n"))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	for _, accept := range []string{"", "application/json"} {
		rec := f.do(t, request{path: "/api/v1/config", header: map[string]string{"Accept": accept}})
		require.Equal(t, http.StatusOK, rec.Code)
		require.NotContains(t, rec.Body.String(), pw)
		require.Contains(t, rec.Body.String(), "migrator")
	}
	require.Equal(t, pw, f.cfg.Current().Clusters[0].MigrationPassword, "redacting must not touch the running config")
}
