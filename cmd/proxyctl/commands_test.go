package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/lib/api"
)

// Every command's table against the canned API, as golden transcripts.
func TestTables(t *testing.T) {
	cases := []struct {
		name string
		args []string
		// req is the request proxyctl must have sent last: method and path.
		method, path string
	}{
		{"health", []string{"health"}, "GET", pathHealth},
		{"clusters", []string{"clusters"}, "GET", "/api/v1/clusters"},
		{"clusters_one", []string{"clusters", "east"}, "GET", "/api/v1/clusters/east"},
		{"backends", []string{"backends"}, "GET", "/api/v1/backends"},
		{"backends_cluster", []string{"backends", "--cluster", "west"}, "GET", "/api/v1/clusters/west/backends"},
		{"backends_cluster_positional", []string{"backends", "west"}, "GET", "/api/v1/clusters/west/backends"},
		{"sessions", []string{"sessions"}, "GET", "/api/v1/sessions"},
		{"config_get", []string{"config", "get"}, "GET", pathConfig},
		{"config_status", []string{"config", "status"}, "GET", pathConfigStatus},
		{"drain_on", []string{"drain", "on", "--reason", "upgrade to v2"}, "PUT", pathOverride},
		{"drain_off", []string{"drain", "off"}, "DELETE", pathOverride},
		{"ha_leader", []string{"ha", "leader", "--role", "prober/east"}, "GET", "/api/v1/ha/leader"},
		{"ha_members", []string{"ha", "members"}, "GET", "/api/v1/ha/members"},
		{"backend_drain", []string{"backend", "drain", "east/10.0.0.1:4000"}, "POST", pathDrainEast},
		{"backend_undrain", []string{"backend", "undrain", "east/10.0.0.1:4000"}, "DELETE", pathDrainEast},
		{"migrations", []string{"migrations"}, "GET", "/api/v1/migrations"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := cannedAPI(t)
			res := f.run(tc.args...)
			golden(t, tc.name, res.transcript(tc.args))
			req := f.last()
			require.Equal(t, tc.method, req.method)
			require.Equal(t, tc.path, req.path)
		})
	}
}

// A 503 from health is an answer, not an error: it is shown, and the exit
// status says unhealthy.
func TestHealthUnhealthy(t *testing.T) {
	f := cannedAPI(t)
	f.set("GET", pathHealth, jsonReply(t, http.StatusServiceUnavailable, drainedDoc))
	res := f.run("health")
	golden(t, "health_unhealthy", res.transcript([]string{"health"}))
	require.Equal(t, exitNo, res.code)

	res = f.run("-o", "json", "health")
	require.Equal(t, exitNo, res.code)
	require.Contains(t, res.stdout, `"status": "unhealthy"`)
}

// -o json prints the API's own bytes, re-indented: fields this proxyctl
// does not know are kept, and nothing is added.
func TestJSONPassthrough(t *testing.T) {
	cases := []struct {
		args         []string
		method, path string
		body         string
	}{
		{[]string{"health"}, "GET", pathHealth, `{"status":"healthy","config_checksum":"x","clusters":{},"future":[1,2]}`},
		{[]string{"clusters"}, "GET", "/api/v1/clusters", `[{"name":"east","state":"ready","future":{"a":true}}]`},
		{[]string{"clusters", "east"}, "GET", "/api/v1/clusters/east", `{"name":"east","future":null}`},
		{[]string{"backends"}, "GET", "/api/v1/backends", `[{"id":"east/a:1","cpu":null,"future":"x"}]`},
		{[]string{"backends", "--cluster", "west"}, "GET", "/api/v1/clusters/west/backends", `[]`},
		{[]string{"sessions"}, "GET", "/api/v1/sessions", `[{"id":1,"future":0.5}]`},
		{[]string{"config", "get"}, "GET", pathConfig, `{"proxy":{"addr":"0.0.0.0:6000"}}`},
		{[]string{"config", "status"}, "GET", pathConfigStatus, `{"checksum":"x","future":[]}`},
		{[]string{"drain", "on"}, "PUT", pathOverride, `{"status":"unhealthy","unhealthy_reason":"r","future":1}`},
		{[]string{"drain", "off"}, "DELETE", pathOverride, `{"status":"healthy","future":1}`},
	}
	for _, tc := range cases {
		t.Run(tc.method+tc.path, func(t *testing.T) {
			f := newFakeAPI(t)
			f.set(tc.method, tc.path, reply{status: http.StatusOK, contentType: "application/json", body: tc.body})
			res := f.run(append([]string{"-o", "json"}, tc.args...)...)
			require.Equal(t, exitOK, res.code, res.stderr)
			var want bytes.Buffer
			require.NoError(t, json.Indent(&want, []byte(tc.body), "", "  "))
			want.WriteByte('\n')
			require.Equal(t, want.String(), res.stdout)
			require.Empty(t, res.stderr)
			require.Contains(t, f.last().accept, "application/json")
		})
	}
}

// config get asks for TOML by default and prints it untouched.
func TestConfigGetAccept(t *testing.T) {
	f := cannedAPI(t)
	res := f.run("config", "get")
	require.Equal(t, configTOML, res.stdout)
	require.Equal(t, "application/toml", f.last().accept)
	res = f.run("-o", "json", "config", "get")
	require.Contains(t, res.stdout, "\"api\": {\n")
	require.Equal(t, "application/json", f.last().accept)
}

func TestDrainSendsReasonAndToken(t *testing.T) {
	f := cannedAPI(t)
	res := f.run("--token", "s3cret", "drain", "on", "--reason", "upgrade to v2")
	require.Equal(t, exitOK, res.code, "a 503 after drain on is the expected answer")
	req := f.last()
	require.Equal(t, "Bearer s3cret", req.auth)
	require.Equal(t, "application/json", req.contentType)
	var o api.Override
	require.NoError(t, json.Unmarshal([]byte(req.body), &o))
	require.Equal(t, "upgrade to v2", o.Reason)

	// Without --reason the proxy picks its own words.
	f.run("drain", "on")
	require.JSONEq(t, `{"reason":""}`, f.last().body)
	require.Empty(t, f.last().auth, "no token, no header")
}

// SWITCHYARD_API and SWITCHYARD_TOKEN stand in for the flags, which win.
func TestEnvironment(t *testing.T) {
	f := cannedAPI(t)
	env := map[string]string{envAPI: f.srv.URL, envToken: "from-env"}
	res := runWith(env, "", "drain", "off")
	require.Equal(t, exitOK, res.code, res.stderr)
	require.Equal(t, "Bearer from-env", f.last().auth)

	res = runWith(env, "", "--token", "from-flag", "drain", "off")
	require.Equal(t, exitOK, res.code, res.stderr)
	require.Equal(t, "Bearer from-flag", f.last().auth)

	res = runWith(map[string]string{envAPI: "http://127.0.0.1:1"}, "", "--api", f.srv.URL, "health")
	require.Equal(t, exitOK, res.code, res.stderr)

	// A URL without a scheme is taken as http.
	res = runWith(map[string]string{envAPI: f.srv.Listener.Addr().String() + "/"}, "", "health")
	require.Equal(t, exitOK, res.code, res.stderr)
}

// config set sends the file as TOML with the token and shows the status.
func TestConfigSetApplied(t *testing.T) {
	t.Chdir(t.TempDir())
	require.NoError(t, os.WriteFile("proxy.toml", []byte(configTOML), 0o644))
	f := cannedAPI(t)
	args := []string{"--token", "tok", "config", "set", "proxy.toml"}
	res := f.run(args...)
	golden(t, "config_set", res.transcript(args))
	req := f.last()
	require.Equal(t, "PUT", req.method)
	require.Equal(t, pathConfig, req.path)
	require.Equal(t, configTOML, req.body)
	require.Equal(t, "application/toml", req.contentType)
	require.Equal(t, "Bearer tok", req.auth)

	// - reads stdin.
	res = runWith(nil, "# from stdin\n", "--api", f.srv.URL, "config", "set", "-")
	require.Equal(t, exitOK, res.code, res.stderr)
	require.Equal(t, "# from stdin\n", f.last().body)
	require.Contains(t, res.stdout, "stdin: configuration applied")
}

// Discovery's 503s are errors with their code, and exit 1.
func TestHALeaderUnavailable(t *testing.T) {
	f := cannedAPI(t)
	f.set("GET", "/api/v1/ha/leader", jsonReply(t, http.StatusServiceUnavailable, api.LeaderError{
		Code: "LEADER_ENDPOINT_UNAVAILABLE", Message: "leader node-a exists but its node info is unusable", Role: "fleet", LeaderID: "node-a"}))
	res := f.run("ha", "leader")
	require.Equal(t, exitNo, res.code, res.stderr)
	require.Contains(t, res.stderr, "LEADER_ENDPOINT_UNAVAILABLE")
	require.Empty(t, res.stdout)
}

// The drain timeout goes as a query parameter, the token as for every
// mutation; a malformed backend ID is a command-line error, sent nowhere.
func TestBackendDrainRequest(t *testing.T) {
	f := cannedAPI(t)
	res := f.run("--token", "tok", "backend", "drain", "east/10.0.0.1:4000", "--timeout", "90s")
	require.Equal(t, exitOK, res.code, res.stderr)
	req := f.last()
	require.Equal(t, "POST", req.method)
	require.Equal(t, pathDrainEast, req.path)
	require.Equal(t, "timeout=1m30s", req.query)
	require.Equal(t, "Bearer tok", req.auth)

	res = f.run("backend", "drain", "east/10.0.0.1:4000")
	require.Equal(t, exitOK, res.code)
	require.Empty(t, f.last().query, "no --timeout: the proxy's default")

	n := len(f.requests())
	for _, bad := range []string{"10.0.0.1:4000", "/10.0.0.1:4000", "east/", "east/a/b"} {
		res = f.run("backend", "drain", bad)
		require.Equal(t, exitTrouble, res.code, bad)
		require.Contains(t, res.stderr, "want <cluster>/<addr>", bad)
	}
	res = f.run("backend", "drain", "east/10.0.0.1:4000", "--timeout", "-1s")
	require.Equal(t, exitTrouble, res.code)
	require.Len(t, f.requests(), n, "nothing sent for a bad command line")

	// The API's refusal is shown as such.
	f.set("POST", "/api/v1/backends/west/10.9.9.9:4000/drain", jsonReply(t, http.StatusNotFound,
		api.Error{Code: "BACKEND_NOT_FOUND", Message: "unknown backend: west/10.9.9.9:4000"}))
	res = f.run("backend", "drain", "west/10.9.9.9:4000")
	require.Equal(t, exitNo, res.code)
	require.Contains(t, res.stderr, "BACKEND_NOT_FOUND")
}
