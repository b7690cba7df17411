package api

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// Every mutating endpoint refuses a missing or wrong token, changes nothing,
// and accepts the right one.
func TestAuth(t *testing.T) {
	mutations := []struct {
		name      string
		req       request
		unchanged func(t *testing.T, f *fixture)
	}{
		{
			name: "set override",
			req:  request{method: http.MethodPut, path: "/api/v1/health/override", body: `{"reason":"r"}`},
			unchanged: func(t *testing.T, f *fixture) {
				healthy, _ := f.proxy.Health()
				require.True(t, healthy)
			},
		},
		{
			name: "clear override",
			req:  request{method: http.MethodDelete, path: "/api/v1/health/override"},
			unchanged: func(t *testing.T, f *fixture) {
				healthy, reason := f.proxy.Health()
				require.False(t, healthy)
				require.Equal(t, "set before", reason)
			},
		},
		{
			name:      "put config",
			req:       request{method: http.MethodPut, path: "/api/v1/config", body: newConfigTOML},
			unchanged: requireFileUnchanged,
		},
	}
	refused := map[string]map[string]string{
		"no header":    nil,
		"wrong token":  {"Authorization": "Bearer s3cre"},
		"token prefix": {"Authorization": "Bearer s3cret2"},
		"no scheme":    {"Authorization": token},
		"basic scheme": {"Authorization": "Basic czNjcmV0"},
		"empty bearer": {"Authorization": "Bearer "},
		"other header": {"X-Api-Token": token},
	}
	for _, m := range mutations {
		for hname, header := range refused {
			t.Run(m.name+"/"+hname, func(t *testing.T) {
				f := newFixture(t)
				f.proxy.SetOverride("set before")
				if m.name == "set override" {
					f.proxy.ClearOverride()
				}
				r := m.req
				r.header = header
				rec := f.do(t, r)
				require.Equal(t, http.StatusUnauthorized, rec.Code)
				require.Equal(t, `Bearer realm="switchyard"`, rec.Header().Get("WWW-Authenticate"))
				require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
				var e Error
				require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &e))
				require.Equal(t, "UNAUTHORIZED", e.Code)
				m.unchanged(t, f)
			})
		}
		t.Run(m.name+"/right token", func(t *testing.T) {
			f := newFixture(t)
			f.proxy.SetOverride("set before")
			rec := f.do(t, m.req.withToken(token))
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			require.Empty(t, rec.Header().Get("WWW-Authenticate"))
		})
		t.Run(m.name+"/lower-case scheme", func(t *testing.T) {
			f := newFixture(t)
			f.proxy.SetOverride("set before")
			r := m.req
			r.header = map[string]string{"Authorization": "bearer " + token}
			rec := f.do(t, r)
			require.Equal(t, http.StatusOK, rec.Code, "the scheme is case-insensitive: %s", rec.Body.String())
		})
		t.Run(m.name+"/no token configured", func(t *testing.T) {
			f := newFixture(t)
			f.srv = New(f.srv.lg, f.proxy, f.cfg, nil, "")
			rec := f.do(t, m.req)
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		})
	}
}

// Reads need no token, even when one is configured.
func TestReadsNeedNoToken(t *testing.T) {
	f := newFixture(t)
	for _, path := range []string{
		"/livez", "/readyz", "/api/v1/health", "/api/v1/clusters", "/api/v1/clusters/east",
		"/api/v1/clusters/east/backends", "/api/v1/backends", "/api/v1/sessions", "/api/v1/config",
		"/api/v1/config/status", "/metrics", "/", "/debug/pprof/",
	} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			rec := f.do(t, request{method: method, path: path})
			require.Equal(t, http.StatusOK, rec.Code, "%s %s: %s", method, path, rec.Body.String())
		}
	}
}

// The override is what /api/v1/health reports, until it is cleared.
func TestOverrideChangesHealth(t *testing.T) {
	f := newFixture(t)
	health := func() (int, Health) {
		rec := f.do(t, request{path: "/api/v1/health"})
		var h Health
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &h))
		return rec.Code, h
	}
	code, h := health()
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, StatusHealthy, h.Status)

	rec := f.do(t, request{method: http.MethodPut, path: "/api/v1/health/override",
		body: `{"reason":"upgrade to v2"}`}.withToken(token))
	require.Equal(t, http.StatusOK, rec.Code, "the override was set: that is a success")
	var set Health
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &set))
	require.Equal(t, StatusUnhealthy, set.Status)
	require.Equal(t, "upgrade to v2", set.UnhealthyReason)
	code, h = health()
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, set, h)

	// No body: the default reason.
	rec = f.do(t, request{method: http.MethodPut, path: "/api/v1/health/override"}.withToken(token))
	require.Equal(t, http.StatusOK, rec.Code)
	_, h = health()
	require.Equal(t, "marked unhealthy by an operator", h.UnhealthyReason)

	// A body that is not JSON is refused and changes nothing.
	rec = f.do(t, request{method: http.MethodPut, path: "/api/v1/health/override", body: "drain"}.withToken(token))
	require.Equal(t, http.StatusBadRequest, rec.Code)
	_, h = health()
	require.Equal(t, "marked unhealthy by an operator", h.UnhealthyReason)

	rec = f.do(t, request{method: http.MethodDelete, path: "/api/v1/health/override"}.withToken(token))
	require.Equal(t, http.StatusOK, rec.Code)
	code, h = health()
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, StatusHealthy, h.Status)
	require.Empty(t, h.UnhealthyReason)
}
