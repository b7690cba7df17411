package api

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	libconfig "github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/manager/coordination/vote"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// Every body is size-limited: the override's at 64 KiB, the config's at
// 1 MiB, and any other endpoint's at 1 MiB. Too large is 413, and changes
// nothing.
func TestBodyLimits(t *testing.T) {
	f := newFixture(t)
	rec := f.do(t, request{method: http.MethodPut, path: "/api/v1/health/override",
		body: `{"reason":"` + strings.Repeat("x", maxOverrideBody) + `"}`}.withToken(token))
	require.Equal(t, http.StatusRequestEntityTooLarge, rec.Code, rec.Body.String())
	requireAPIError(t, rec.Body.Bytes(), "TOO_LARGE", "request body larger than 65536 bytes")
	healthy, _ := f.proxy.Health()
	require.True(t, healthy)

	rec = f.do(t, putConfig(newConfigTOML+strings.Repeat("#", maxConfigBody)))
	require.Equal(t, http.StatusRequestEntityTooLarge, rec.Code)
	requireFileUnchanged(t, f)

	// An endpoint that reads whatever it gets (the vote endpoint, mounted
	// from outside the package) still sees at most maxBody bytes.
	var readErr error
	var n int64
	f.srv.HandleInternal(vote.Path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, readErr = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	f.do(t, request{method: http.MethodPost, path: vote.Path, body: strings.Repeat("x", maxBody+10)}.withToken(token))
	var mbe *http.MaxBytesError
	require.ErrorAs(t, readErr, &mbe)
	require.EqualValues(t, maxBody, n)
}

// The HTTP server has every limit set, and a client that sends its headers
// too slowly is cut off.
func TestServerTimeouts(t *testing.T) {
	f := newFixture(t)
	f.srv.timeouts.readHeader = 300 * time.Millisecond
	require.NoError(t, f.srv.Start(context.Background(), "127.0.0.1:0", nil))
	t.Cleanup(f.srv.Close)
	srv := f.srv.srv
	require.Equal(t, 300*time.Millisecond, srv.ReadHeaderTimeout)
	require.Equal(t, readTimeout, srv.ReadTimeout)
	require.Equal(t, writeTimeout, srv.WriteTimeout)
	require.Equal(t, idleTimeout, srv.IdleTimeout)
	require.Equal(t, maxHeaderBytes, srv.MaxHeaderBytes)
	require.Greater(t, writeTimeout, 30*time.Second, "pprof's default 30 s profile must fit")

	conn, err := net.Dial("tcp", f.srv.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "GET /livez HTTP/1.1\r\nHost: x\r\n") // and never the blank line
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(30*time.Second)))
	start := time.Now()
	_, err = io.ReadAll(conn)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the server never closed the slow connection")
	require.Less(t, time.Since(start), 20*time.Second)

	// Headers over the limit are refused.
	req, err := http.NewRequest(http.MethodGet, "http://"+f.srv.Addr().String()+"/livez", nil)
	require.NoError(t, err)
	req.Header.Set("X-Big", strings.Repeat("x", 2*maxHeaderBytes))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
}

// A CPU profile longer than ReadTimeout still runs its whole duration
// (net/http lifts the read deadline once the request is read), so
// ReadTimeout can stay short while WriteTimeout allows long profiles.
func TestProfileOutlivesReadTimeout(t *testing.T) {
	f := newFixture(t)
	f.srv.timeouts.read = 500 * time.Millisecond
	require.NoError(t, f.srv.Start(context.Background(), "127.0.0.1:0", nil))
	t.Cleanup(f.srv.Close)
	req, err := http.NewRequest(http.MethodGet, "http://"+f.srv.Addr().String()+"/debug/pprof/profile?seconds=2", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+readToken)
	start := time.Now()
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.GreaterOrEqual(t, time.Since(start), 2*time.Second, "the profile was cut short")
	require.NotEmpty(t, body)
}

// mTLS: a client certificate verified against api.tls.ca gets the role its
// subject CN, DNS SAN or URI SAN maps to; one from another CA, or one that
// maps to nothing, gets nothing; a client without one can still use a token.
func TestClientCertificateRoles(t *testing.T) {
	certs := testenv.NewCerts(t, "")
	other := testenv.NewCerts(t, "")
	apiCfg := libconfig.API{
		Addr: "127.0.0.1:0", Token: token, PublicEndpoints: libconfig.DefaultPublicEndpoints,
		TLS:         libconfig.TLSConfig{Cert: certs.ServerCert, Key: certs.ServerKey, CA: certs.CAFile},
		ClientCerts: libconfig.ClientCerts{Admin: []string{"ops", "node-1.fleet.example"}, Read: []string{"spiffe://example.org/grafana", "ops-viewer"}},
	}
	tlsCfg, err := TLSConfig(apiCfg)
	require.NoError(t, err)
	f := newFixture(t)
	f.srv = New(f.srv.lg, f.proxy, f.cfg, nil, NewAuth(apiCfg))
	votes := withInternal(t, f)
	require.NoError(t, f.srv.Start(context.Background(), "127.0.0.1:0", tlsCfg))
	t.Cleanup(f.srv.Close)
	base := "https://" + f.srv.Addr().String()

	admin, _, _ := certs.IssueClientCert(t, "ops", nil, nil)
	adminBySAN, _, _ := certs.IssueClientCert(t, "whatever", []string{"node-1.fleet.example"}, nil)
	reader, _, _ := certs.IssueClientCert(t, "grafana", nil, []string{"spiffe://example.org/grafana"})
	// The names are exact: a prefix or a different case is not a match.
	unmapped, _, _ := certs.IssueClientCert(t, "ops-viewer-2", []string{"OPS"}, nil)
	foreign, _, _ := other.IssueClientCert(t, "ops", nil, nil)

	call := func(cert *tls.Certificate, method, path, auth string) int {
		t.Helper()
		tc := &tls.Config{RootCAs: certs.CertPool(), MinVersion: tls.VersionTLS12}
		if cert != nil {
			tc.Certificates = []tls.Certificate{*cert}
		}
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: tc}}
		req, err := http.NewRequest(method, base+path, strings.NewReader(`{"reason":"r"}`))
		require.NoError(t, err)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := c.Do(req)
		if err != nil {
			return -1 // the handshake failed
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}

	for name, tc := range map[string]struct {
		cert             *tls.Certificate
		auth             string
		read, put, votes int
	}{
		"admin by CN":           {cert: &admin, read: 200, put: 200, votes: 200},
		"admin by DNS SAN":      {cert: &adminBySAN, read: 200, put: 200, votes: 200},
		"read by URI SAN":       {cert: &reader, read: 200, put: 403, votes: 403},
		"unmapped":              {cert: &unmapped, read: 401, put: 401, votes: 401},
		"no certificate":        {read: 401, put: 401, votes: 401},
		"no certificate, token": {auth: "Bearer " + token, read: 200, put: 200, votes: 200},
		"read cert, bad token":  {cert: &reader, auth: "Bearer guess", read: 401, put: 401, votes: 401},
	} {
		t.Run(name, func(t *testing.T) {
			before := *votes
			require.Equal(t, tc.read, call(tc.cert, http.MethodGet, "/api/v1/sessions", tc.auth))
			require.Equal(t, tc.put, call(tc.cert, http.MethodPut, "/api/v1/health/override", tc.auth))
			require.Equal(t, tc.votes, call(tc.cert, http.MethodPost, vote.Path, tc.auth))
			if tc.votes == 200 {
				require.Equal(t, before+1, *votes)
			} else {
				require.Equal(t, before, *votes, "a refused vote request never reaches the voter")
			}
			f.proxy.ClearOverride()
		})
	}
	// A certificate from another CA fails the handshake.
	require.Equal(t, -1, call(&foreign, http.MethodGet, "/api/v1/sessions", ""))
	// The public endpoints answer clients without certificates.
	require.Equal(t, 200, call(nil, http.MethodGet, "/livez", ""))
}

// The status page's HTML challenge and the JSON one differ only in how a
// browser reacts; both are 401 and say nothing about why.
func TestUnauthorizedBodySaysNothing(t *testing.T) {
	f := newFixture(t)
	for _, h := range []map[string]string{nil, {"Authorization": "Bearer guess"}, {"Authorization": "Bearer " + token[:3]}} {
		rec := f.do(t, request{path: "/api/v1/config", header: h, anonymous: true})
		require.Equal(t, http.StatusUnauthorized, rec.Code)
		var body map[string]any
		require.NoError(t, json.NewDecoder(bufio.NewReader(rec.Body)).Decode(&body))
		require.Equal(t, map[string]any{"code": "UNAUTHORIZED", "message": "authentication required"}, body)
	}
}
