package main

import (
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/lib/api"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// API errors print "CODE: message" on stderr and exit 1.
func TestAPIErrors(t *testing.T) {
	unauthorized := api.Error{Code: "UNAUTHORIZED", Message: "authentication required"}
	cases := []struct {
		name   string
		setup  func(f *fakeAPI)
		args   []string
		stderr string
	}{{
		name:   "401 without a token says where one goes",
		setup:  func(f *fakeAPI) { f.set("PUT", pathOverride, jsonReply(t, http.StatusUnauthorized, unauthorized)) },
		args:   []string{"drain", "on"},
		stderr: "UNAUTHORIZED: authentication required (set --token or SWITCHYARD_TOKEN)\n",
	}, {
		name:   "401 with a wrong token",
		setup:  func(f *fakeAPI) { f.set("DELETE", pathOverride, jsonReply(t, http.StatusUnauthorized, unauthorized)) },
		args:   []string{"--token", "wrong", "drain", "off"},
		stderr: "UNAUTHORIZED: authentication required\n",
	}, {
		name: "404 unknown cluster",
		setup: func(f *fakeAPI) {
			f.set("GET", "/api/v1/clusters/nope", jsonReply(t, http.StatusNotFound,
				api.Error{Code: "CLUSTER_NOT_FOUND", Message: `no cluster named "nope"`}))
		},
		args:   []string{"clusters", "nope"},
		stderr: "CLUSTER_NOT_FOUND: no cluster named \"nope\"\n",
	}, {
		name: "404 unknown cluster's backends",
		setup: func(f *fakeAPI) {
			f.set("GET", "/api/v1/clusters/nope/backends", jsonReply(t, http.StatusNotFound,
				api.Error{Code: "CLUSTER_NOT_FOUND", Message: `no cluster named "nope"`}))
		},
		args:   []string{"-o", "json", "backends", "--cluster", "nope"},
		stderr: "CLUSTER_NOT_FOUND: no cluster named \"nope\"\n",
	}, {
		name:   "404 from a proxy without the endpoint",
		setup:  func(*fakeAPI) {},
		args:   []string{"sessions"},
		stderr: "NOT_FOUND: no such endpoint: /api/v1/sessions\n",
	}, {
		// An older proxy that could set the override but not clear it.
		name:   "405",
		setup:  func(f *fakeAPI) { f.set("PUT", pathOverride, jsonReply(t, http.StatusOK, drainedDoc)) },
		args:   []string{"drain", "off"},
		stderr: "METHOD_NOT_ALLOWED: DELETE is not allowed on /api/v1/health/override\n",
	}, {
		name: "not the API's JSON",
		setup: func(f *fakeAPI) {
			f.set("GET", "/api/v1/clusters", reply{status: http.StatusBadGateway, contentType: "text/html",
				body: "<html>bad gateway</html>\n<body></body>"})
		},
		args:   []string{"clusters"},
		stderr: "HTTP_502: <html>bad gateway</html>\n",
	}, {
		name: "a 503 from health that is not a Health document",
		setup: func(f *fakeAPI) {
			f.set("GET", pathHealth, reply{status: http.StatusServiceUnavailable, body: ""})
		},
		args:   []string{"health"},
		stderr: "HTTP_503: Service Unavailable\n",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAPI(t)
			tc.setup(f)
			res := f.run(tc.args...)
			require.Equal(t, exitNo, res.code)
			require.Equal(t, tc.stderr, res.stderr)
			require.Empty(t, res.stdout)
		})
	}
}

// A rejected config prints every problem, named after the file, and exits 1.
func TestConfigSetRejected(t *testing.T) {
	t.Chdir(t.TempDir())
	require.NoError(t, os.WriteFile("bad.toml", []byte("[proxy]\nadress = 1\n"), 0o644))
	f := newFakeAPI(t)
	f.set("PUT", pathConfig, jsonReply(t, http.StatusBadRequest, api.ConfigErrors{
		Error: api.Error{Code: "INVALID_CONFIG", Message: "the config was rejected; the running config is unchanged"},
		Errors: []string{
			"request body: line 2: unknown key proxy.adress",
			"request body: line 4: cluster[0]: no instances and no etcd-endpoints",
		},
	}))
	args := []string{"config", "set", "bad.toml"}
	res := f.run(args...)
	golden(t, "config_set_invalid", res.transcript(args))
	require.Equal(t, exitNo, res.code)

	// Applied in part: 500 with the same shape.
	f.set("PUT", pathConfig, jsonReply(t, http.StatusInternalServerError, api.ConfigErrors{
		Error:  api.Error{Code: "APPLY_FAILED", Message: "route port 6001: address already in use"},
		Errors: []string{"route port 6001: address already in use"},
	}))
	res = f.run(args...)
	require.Equal(t, exitNo, res.code)
	require.Equal(t, "APPLY_FAILED: route port 6001: address already in use\n"+
		"  route port 6001: address already in use\n", res.stderr)

	// An unreadable file never reaches the API.
	n := len(f.requests())
	res = f.run("config", "set", "missing.toml")
	require.Equal(t, exitNo, res.code)
	require.Contains(t, res.stderr, "proxyctl: read config: open missing.toml")
	require.Len(t, f.requests(), n)
}

// A proxy that cannot be reached is exit 2 with one line naming the URL.
func TestUnreachable(t *testing.T) {
	addr := testenv.FreeAddr(t)
	for _, args := range [][]string{{"health"}, {"clusters"}, {"drain", "on"}, {"-o", "json", "config", "get"}} {
		res := runWith(nil, "", append([]string{"--api", "http://" + addr}, args...)...)
		require.Equal(t, exitTrouble, res.code, args)
		require.Empty(t, res.stdout)
		require.Equal(t, 1, strings.Count(res.stderr, "\n"), res.stderr)
		require.Contains(t, res.stderr, "cannot reach the API at http://"+addr+"/api/v1/")
		require.Contains(t, res.stderr, "connection refused")
	}
}

func TestTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers; returns when proxyctl gives up
	}))
	t.Cleanup(srv.Close)
	res := runWith(nil, "", "--api", srv.URL, "--timeout", "200ms", "health")
	require.Equal(t, exitTrouble, res.code)
	require.Equal(t, "proxyctl: cannot reach the API at "+srv.URL+"/api/v1/health: no answer within 200ms (--timeout)\n", res.stderr)
}

func TestHTTPS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"healthy","clusters":{}}`))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is the point
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600))

	res := runWith(nil, "", "--api", srv.URL, "health")
	require.Equal(t, exitTrouble, res.code)
	require.Contains(t, res.stderr, "cannot reach the API at "+srv.URL)
	require.Contains(t, res.stderr, "(see --cacert and --insecure)")

	res = runWith(nil, "", "--api", srv.URL, "--cacert", ca, "health")
	require.Equal(t, exitOK, res.code, res.stderr)
	require.Contains(t, res.stdout, "STATUS  healthy")

	res = runWith(nil, "", "--api", srv.URL, "--insecure", "health")
	require.Equal(t, exitOK, res.code, res.stderr)

	res = runWith(nil, "", "--api", srv.URL, "--cacert", filepath.Join(t.TempDir(), "none.pem"), "health")
	require.Equal(t, exitTrouble, res.code)
	require.Contains(t, res.stderr, "--cacert")
}

// A wrong command line is exit 2, told apart from an API that says no.
func TestUsageErrors(t *testing.T) {
	f := cannedAPI(t)
	for _, args := range [][]string{
		{"bogus"},
		{"config", "bogus"},
		{"drain"},
		{"-o", "yaml", "health"},
		{"--timeout", "0s", "health"},
		{"--nope", "health"},
		{"config", "set"},
		{"config", "validate", "a", "b"},
		{"health", "extra"},
		{"--api", "ftp://x", "health"},
		{"--api", "http://", "health"},
	} {
		res := f.run(args...)
		if args[0] == "drain" {
			// A bare group shows its help.
			require.Equal(t, exitOK, res.code)
			require.Contains(t, res.stdout, "Usage:")
			continue
		}
		require.Equal(t, exitTrouble, res.code, "%v: %s", args, res.stderr)
		require.NotEmpty(t, res.stderr, args)
	}
	require.Empty(t, f.requests(), "no usage error reaches the API")
}
