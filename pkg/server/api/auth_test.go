package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	libapi "github.com/switchyard-db/switchyard/lib/api"
	libconfig "github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
	"github.com/switchyard-db/switchyard/pkg/manager/coordination/vote"
)

// fakeCoord answers the HA endpoints: no leader, no members.
type fakeCoord struct{}

func (fakeCoord) Mode() string { return "etcd" }
func (fakeCoord) Leader(context.Context, string) (coordination.LeaderInfo, error) {
	return coordination.LeaderInfo{}, coordination.ErrNoLeader
}
func (fakeCoord) Members(context.Context) ([]coordination.Member, error) { return nil, nil }
func (fakeCoord) Health() (string, string)                               { return "healthy", "" }

// withInternal mounts a stand-in for the vote endpoint, as pkg/server does,
// and the HA endpoints.
func withInternal(t *testing.T, f *fixture) *int {
	t.Helper()
	calls := new(int)
	f.srv.SetCoordination(fakeCoord{}, "n1")
	f.srv.HandleInternal(vote.Path, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		*calls++
		writeJSON(w, http.StatusOK, map[string]string{"vote": "up"})
	}))
	return calls
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// credentials are what a caller can send.
var credentials = map[string]map[string]string{
	"none":        nil,
	"read":        {"Authorization": "Bearer " + readToken},
	"admin":       {"Authorization": "Bearer " + token},
	"wrong":       {"Authorization": "Bearer guess"},
	"basic read":  {"Authorization": basic("anyone", readToken)},
	"basic admin": {"Authorization": basic("", token)},
}

// roleOfCredential is the role each credential must end up with: HTTP Basic
// (what browsers send on their own) never gets more than read.
var roleOfCredential = map[string]Role{
	"none": RoleNone, "wrong": RoleNone, "read": RoleRead, "admin": RoleAdmin,
	"basic read": RoleRead, "basic admin": RoleRead,
}

// endpoint is one method and path, the role it needs, and what it answers
// when let through.
type endpoint struct {
	method, path, body string
	need               Role
	ok                 int
}

func endpoints() []endpoint {
	return []endpoint{
		{method: "GET", path: "/livez", need: RoleNone, ok: 200},
		{method: "HEAD", path: "/livez", need: RoleNone, ok: 200},
		{method: "GET", path: "/readyz", need: RoleNone, ok: 200},
		{method: "GET", path: "/metrics", need: RoleNone, ok: 200},
		{method: "GET", path: "/api/v1/ha/leader", need: RoleNone, ok: 503}, // no leader: an answer
		{method: "GET", path: "/", need: RoleRead, ok: 200},
		{method: "HEAD", path: "/", need: RoleRead, ok: 200},
		{method: "GET", path: "/api/v1/health", need: RoleRead, ok: 200},
		{method: "GET", path: "/api/v1/clusters", need: RoleRead, ok: 200},
		{method: "GET", path: "/api/v1/clusters/east", need: RoleRead, ok: 200},
		{method: "GET", path: "/api/v1/clusters/nope", need: RoleRead, ok: 404},
		{method: "GET", path: "/api/v1/clusters/east/backends", need: RoleRead, ok: 200},
		{method: "GET", path: "/api/v1/backends", need: RoleRead, ok: 200},
		{method: "GET", path: "/api/v1/sessions", need: RoleRead, ok: 200},
		{method: "GET", path: "/api/v1/config", need: RoleRead, ok: 200},
		{method: "GET", path: "/api/v1/config/status", need: RoleRead, ok: 200},
		{method: "GET", path: "/api/v1/ha/members", need: RoleRead, ok: 200},
		{method: "GET", path: "/debug/pprof/", need: RoleRead, ok: 200},
		{method: "GET", path: "/debug/pprof/cmdline", need: RoleRead, ok: 200},
		{method: "GET", path: "/debug/pprof/symbol", need: RoleRead, ok: 200},
		{method: "GET", path: "/debug/pprof/goroutine?debug=1", need: RoleRead, ok: 200},
		{method: "GET", path: "/no/such/path", need: RoleRead, ok: 404},
		{method: "PUT", path: "/api/v1/health/override", body: `{"reason":"r"}`, need: RoleAdmin, ok: 200},
		{method: "DELETE", path: "/api/v1/health/override", need: RoleAdmin, ok: 200},
		{method: "PUT", path: "/api/v1/config", body: newConfigTOML, need: RoleAdmin, ok: 200},
		{method: "POST", path: vote.Path, body: `{}`, need: RoleAdmin, ok: 200},
	}
}

// TestAuthTable calls every endpoint with every kind of credential: a role
// below the endpoint's gets 401 (no or a wrong credential) or 403 (a valid
// one that is not enough), and nothing happens.
func TestAuthTable(t *testing.T) {
	for _, ep := range endpoints() {
		for cname, header := range credentials {
			t.Run(ep.method+" "+ep.path+"/"+cname, func(t *testing.T) {
				f := newFixture(t)
				votes := withInternal(t, f)
				rec := f.do(t, request{method: ep.method, path: ep.path, body: ep.body, header: header, anonymous: header == nil})
				got := roleOfCredential[cname]
				if ep.need == RoleNone {
					// Public: credentials, even wrong ones, are not looked at.
					require.Equal(t, ep.ok, rec.Code, rec.Body.String())
					return
				}
				switch {
				case got >= ep.need:
					require.Equal(t, ep.ok, rec.Code, rec.Body.String())
					return
				case got == RoleNone:
					require.Equal(t, http.StatusUnauthorized, rec.Code, rec.Body.String())
					require.Equal(t, `Bearer realm="switchyard"`, rec.Header().Get("WWW-Authenticate"))
					if ep.method != "HEAD" {
						requireAPIError(t, rec.Body.Bytes(), "UNAUTHORIZED", "authentication required")
					}
				default:
					require.Equal(t, http.StatusForbidden, rec.Code, rec.Body.String())
					requireAPIError(t, rec.Body.Bytes(), "FORBIDDEN",
						"this endpoint needs the admin role: the admin token as a bearer token, or an admin client certificate")
				}
				// Refused: nothing changed, and nothing was read out.
				requireFileUnchanged(t, f)
				healthy, _ := f.proxy.Health()
				require.True(t, healthy)
				require.Zero(t, *votes)
				require.NotContains(t, rec.Body.String(), "east")
			})
		}
	}
}

func requireAPIError(t *testing.T, body []byte, code, msg string) {
	t.Helper()
	var e libapi.Error
	require.NoError(t, json.Unmarshal(body, &e), string(body))
	require.Equal(t, libapi.Error{Code: code, Message: msg}, e)
}

// Every way to get an Authorization header wrong is a plain 401 that says
// nothing about why.
func TestAuthRefusesMalformedCredentials(t *testing.T) {
	for name, h := range map[string]string{
		"token prefix":       "Bearer " + token[:len(token)-1],
		"token longer":       "Bearer " + token + "x",
		"no scheme":          token,
		"empty bearer":       "Bearer ",
		"unknown scheme":     "Token " + token,
		"basic not base64":   "Basic !!!",
		"basic no colon":     "Basic " + base64.StdEncoding.EncodeToString([]byte(readToken)),
		"basic user = token": basic(readToken, ""),
		"other header":       "",
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			r := request{path: "/api/v1/sessions", header: map[string]string{"Authorization": h}}
			if h == "" {
				r.header = map[string]string{"X-Api-Token": readToken}
				r.anonymous = true
			}
			rec := f.do(t, r)
			require.Equal(t, http.StatusUnauthorized, rec.Code)
			requireAPIError(t, rec.Body.Bytes(), "UNAUTHORIZED", "authentication required")
		})
	}
	// The scheme is case-insensitive (RFC 9110); the token is not.
	f := newFixture(t)
	rec := f.do(t, request{path: "/api/v1/sessions", header: map[string]string{"Authorization": "bearer " + readToken}})
	require.Equal(t, http.StatusOK, rec.Code)
	rec = f.do(t, request{path: "/api/v1/sessions", header: map[string]string{"Authorization": "Bearer " + strings.ToUpper(readToken)}})
	require.Equal(t, http.StatusUnauthorized, rec.Code)
}

// With no token configured, no change gets through, whatever is sent, and
// the answer says to set api.token; the running config is unchanged. Reads
// are closed too, with the same kind of message.
func TestNoTokenConfigured(t *testing.T) {
	for cname, header := range credentials {
		t.Run(cname, func(t *testing.T) {
			f := newFixture(t)
			f.srv = New(f.srv.lg, f.proxy, f.cfg, nil, NewAuth(libconfig.API{PublicEndpoints: libconfig.DefaultPublicEndpoints}))
			before := f.cfg.Current()
			rec := f.do(t, request{method: http.MethodPut, path: "/api/v1/config", body: newConfigTOML, header: header, anonymous: true})
			require.Equal(t, http.StatusForbidden, rec.Code)
			requireAPIError(t, rec.Body.Bytes(), "NO_ADMIN_CREDENTIAL",
				"changes through the API are disabled because no admin credential is configured: set api.token (or api.client-certs.admin) and restart the proxy")
			requireFileUnchanged(t, f)
			require.Same(t, before, f.cfg.Current(), "the running config is unchanged")

			rec = f.do(t, request{method: http.MethodPut, path: "/api/v1/health/override", header: header, anonymous: true})
			require.Equal(t, http.StatusForbidden, rec.Code)
			healthy, _ := f.proxy.Health()
			require.True(t, healthy)

			rec = f.do(t, request{path: "/api/v1/sessions", header: header, anonymous: true})
			require.Equal(t, http.StatusForbidden, rec.Code)
			requireAPIError(t, rec.Body.Bytes(), "NO_READ_CREDENTIAL",
				"this endpoint needs a credential and none is configured: set api.read-token or api.token (or api.client-certs) and restart the proxy")

			rec = f.do(t, request{path: "/livez", header: header, anonymous: true})
			require.Equal(t, http.StatusOK, rec.Code)
		})
	}
}

// A read token alone lets readers in and keeps changes closed.
func TestReadTokenOnly(t *testing.T) {
	f := newFixture(t)
	f.srv = New(f.srv.lg, f.proxy, f.cfg, nil, NewAuth(libconfig.API{ReadToken: readToken}))
	rec := f.do(t, request{path: "/api/v1/sessions"})
	require.Equal(t, http.StatusOK, rec.Code)
	rec = f.do(t, request{method: http.MethodPut, path: "/api/v1/config", body: newConfigTOML}.withToken(readToken))
	require.Equal(t, http.StatusForbidden, rec.Code)
	requireAPIError(t, rec.Body.Bytes(), "NO_ADMIN_CREDENTIAL",
		"changes through the API are disabled because no admin credential is configured: set api.token (or api.client-certs.admin) and restart the proxy")
	requireFileUnchanged(t, f)
}

// pprof is closed without a token, and open with the read token.
func TestPprofNeedsReadToken(t *testing.T) {
	f := newFixture(t)
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap",
		"/debug/pprof/goroutine?debug=2", "/debug/pprof/profile?seconds=1", "/debug/pprof/trace?seconds=1", "/debug/pprof/symbol"} {
		rec := f.do(t, request{path: path, anonymous: true})
		require.Equal(t, http.StatusUnauthorized, rec.Code, path)
		require.NotContains(t, rec.Body.String(), "goroutine", path)
	}
	rec := f.do(t, request{path: "/debug/pprof/goroutine?debug=2"})
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), "goroutine")
}

// api.public-endpoints closes the open endpoints one by one.
func TestPublicEndpointsConfigurable(t *testing.T) {
	f := newFixture(t)
	f.srv = New(f.srv.lg, f.proxy, f.cfg, f.srv.metrics, NewAuth(libconfig.API{Token: token, ReadToken: readToken,
		PublicEndpoints: []string{"/livez"}}))
	f.srv.SetCoordination(fakeCoord{}, "n1")
	require.Equal(t, http.StatusOK, f.do(t, request{path: "/livez", anonymous: true}).Code)
	for _, path := range []string{"/readyz", "/metrics", "/api/v1/ha/leader"} {
		require.Equal(t, http.StatusUnauthorized, f.do(t, request{path: path, anonymous: true}).Code, path)
		require.NotEqual(t, http.StatusUnauthorized, f.do(t, request{path: path}).Code, path)
	}

	f.srv = New(f.srv.lg, f.proxy, f.cfg, f.srv.metrics, NewAuth(libconfig.API{Token: token}))
	require.Equal(t, http.StatusUnauthorized, f.do(t, request{path: "/livez", anonymous: true}).Code)
	require.Equal(t, http.StatusOK, f.do(t, request{path: "/livez"}.withToken(token)).Code)
}

// A browser asking for the page without credentials is asked for them
// (HTTP Basic), and shown how to sign in when it cancels; API clients get a
// bearer challenge, which browsers do not prompt for.
func TestBrowserChallenge(t *testing.T) {
	f := newFixture(t)
	rec := f.do(t, request{path: "/", anonymous: true,
		header: map[string]string{"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}})
	require.Equal(t, http.StatusUnauthorized, rec.Code)
	require.Equal(t, `Basic realm="switchyard", charset="UTF-8"`, rec.Header().Get("WWW-Authenticate"))
	require.Equal(t, "text/html; charset=utf-8", rec.Header().Get("Content-Type"))
	require.Contains(t, rec.Body.String(), "read token")
	require.NotContains(t, rec.Body.String(), "cluster")

	rec = f.do(t, request{path: "/", header: map[string]string{"Authorization": basic("me", readToken), "Accept": "text/html"}})
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), "<title>Switchyard status</title>")
}

// Tokens are compared as SHA-256 digests with subtle.ConstantTimeCompare, so
// a guess that shares a prefix, or the length, with the token gets no
// further than any other guess. This checks the outcome for such guesses;
// the constant-time property comes from the digest comparison in tokenRole.
func TestTokenCompare(t *testing.T) {
	a := NewAuth(libconfig.API{Token: token, ReadToken: readToken})
	require.Equal(t, RoleAdmin, a.tokenRole([]byte(token)))
	require.Equal(t, RoleRead, a.tokenRole([]byte(readToken)))
	for _, guess := range []string{"", "s", "s3cre", "s3cret ", "S3cret", "s3creu", token + token, readToken[:4]} {
		require.Equal(t, RoleNone, a.tokenRole([]byte(guess)), "%q", guess)
	}
	// Only digests are kept.
	require.NotContains(t, string(a.admin[:]), token)
	require.Equal(t, RoleNone, NewAuth(libconfig.API{}).tokenRole(nil), "no token configured: the empty token is not one")
}
