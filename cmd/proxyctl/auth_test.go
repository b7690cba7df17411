package main

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/lib/api"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// The token goes with every request, reads included: the API closes reads
// to anonymous callers.
func TestTokenOnEveryRequest(t *testing.T) {
	for _, args := range [][]string{
		{"health"}, {"clusters"}, {"clusters", "east"}, {"backends"}, {"backends", "--cluster", "west"},
		{"sessions"}, {"config", "get"}, {"config", "status"}, {"drain", "on"}, {"drain", "off"},
		{"ha", "leader"}, {"ha", "members"},
	} {
		f := cannedAPI(t)
		res := f.run(append([]string{"--token", "read-tok"}, args...)...)
		require.Equal(t, exitOK, res.code, "%v: %s", args, res.stderr)
		for _, req := range f.requests() {
			require.Equal(t, "Bearer read-tok", req.auth, "%v: %s %s", args, req.method, req.path)
		}
		res = runWith(map[string]string{envAPI: f.srv.URL, envToken: "env-tok"}, "", args...)
		require.Equal(t, exitOK, res.code, "%v: %s", args, res.stderr)
		require.Equal(t, "Bearer env-tok", f.last().auth, "%v", args)
	}
}

// A 403 (a read token on a change, or no admin token configured) is shown
// as the API words it, without the --token hint, which would mislead.
func TestForbidden(t *testing.T) {
	f := cannedAPI(t)
	f.set("PUT", pathOverride, jsonReply(t, http.StatusForbidden, api.Error{Code: "FORBIDDEN",
		Message: "this endpoint needs the admin role: the admin token as a bearer token, or an admin client certificate"}))
	res := f.run("--token", "read-tok", "drain", "on")
	require.Equal(t, exitNo, res.code)
	require.Equal(t, "FORBIDDEN: this endpoint needs the admin role: the admin token as a bearer token, or an admin client certificate\n", res.stderr)
}

// --cert and --key present a client certificate to an API behind mTLS.
func TestClientCertificate(t *testing.T) {
	certs := testenv.NewCerts(t, "")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"healthy","clusters":{}}`))
	}))
	srv.TLS = certs.ServerTLSConfig()
	srv.TLS.ClientAuth = tls.RequireAndVerifyClientCert
	srv.StartTLS()
	t.Cleanup(srv.Close)

	res := runWith(nil, "", "--api", srv.URL, "--cacert", certs.CAFile, "--cert", certs.ClientCert, "--key", certs.ClientKey, "health")
	require.Equal(t, exitOK, res.code, res.stderr)
	res = runWith(nil, "", "--api", srv.URL, "--cacert", certs.CAFile, "health")
	require.Equal(t, exitTrouble, res.code, "the handshake fails without a certificate")
	res = runWith(nil, "", "--api", srv.URL, "--cert", certs.ClientCert, "health")
	require.Equal(t, exitTrouble, res.code)
	require.Contains(t, res.stderr, "--cert and --key go together")
}
