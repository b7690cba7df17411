package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	libapi "github.com/switchyard-db/switchyard/lib/api"
	cfgmgr "github.com/switchyard-db/switchyard/pkg/manager/config"
	"go.uber.org/zap"
)

// fuzzAPI is one API over the fake proxy and a real config manager, shared by
// the fuzz iterations of one process (the manager writes its file in a
// temporary directory).
func fuzzAPI(f *testing.F) (*Server, *fakeProxy) {
	path := filepath.Join(f.TempDir(), "switchyard.toml")
	if err := os.WriteFile(path, []byte(configTOML), 0o600); err != nil {
		f.Fatal(err)
	}
	cm := cfgmgr.New(zap.NewNop(), path)
	if _, err := cm.Load(); err != nil {
		f.Fatal(err)
	}
	p := newFakeProxy()
	return New(zap.NewNop(), p, cm, nil, NewAuth(fixtureAPI())), p
}

// fuzzRoutes are the endpoints the fuzzer calls; {name} is replaced by the
// fuzzer's string.
var fuzzRoutes = []struct{ method, path string }{
	{http.MethodPut, "/api/v1/health/override"},
	{http.MethodDelete, "/api/v1/health/override"},
	{http.MethodPut, "/api/v1/config"},
	{http.MethodGet, "/api/v1/clusters/{name}"},
	{http.MethodGet, "/api/v1/clusters/{name}/backends"},
	{http.MethodPost, "/api/v1/health/override"},
	{http.MethodGet, "/api/v1/health"},
}

// FuzzAPIBodies sends arbitrary bodies (and names in paths) to the API's
// endpoints. Whatever the input: no panic, a JSON answer with a code and a
// message on every error, a 4xx (never a 5xx) for input the API refuses,
// the override set to exactly the decoded reason, and the API token never
// echoed back unless the caller sent it.
func FuzzAPIBodies(f *testing.F) {
	f.Add(uint8(0), true, "", `{"reason":"maintenance"}`)
	f.Add(uint8(0), true, "", ``)
	f.Add(uint8(0), true, "", `{"reason":`)
	f.Add(uint8(0), true, "", `{"reason":1}`)
	f.Add(uint8(0), true, "", `[]`)
	f.Add(uint8(0), true, "", `{"reason":"a"}{"reason":"b"}`)
	f.Add(uint8(0), false, "", `{"reason":"no token"}`)
	f.Add(uint8(1), true, "", ``)
	f.Add(uint8(2), true, "", configTOML)
	f.Add(uint8(2), true, "", badConfigTOML)
	f.Add(uint8(2), true, "", "[proxy]\naddr = \"s3cret")
	f.Add(uint8(2), true, "", "\x00\xff")
	f.Add(uint8(3), false, "east", ``)
	f.Add(uint8(3), false, "../../config", ``)
	f.Add(uint8(4), false, "nope%00", ``)
	f.Add(uint8(5), true, "", `{}`)
	f.Add(uint8(6), false, "", `{"reason":"ignored"}`)

	srv, p := fuzzAPI(f)
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, route uint8, withToken bool, name, body string) {
		r := fuzzRoutes[int(route)%len(fuzzRoutes)]
		target := strings.ReplaceAll(r.path, "{name}", url.PathEscape(name))
		req := httptest.NewRequest(r.method, target, strings.NewReader(body))
		if withToken {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		p.ClearOverride()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s %s: Content-Type %q", r.method, target, ct)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s: answer is not JSON: %q", r.method, target, rec.Body.String())
		}
		if rec.Code >= 500 {
			t.Fatalf("%s %s with %q: %d %s", r.method, target, body, rec.Code, rec.Body.String())
		}
		if rec.Code >= 400 {
			var e libapi.Error
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code == "" || e.Message == "" {
				t.Fatalf("%s %s: error without code and message: %s", r.method, target, rec.Body.String())
			}
		}
		if !strings.Contains(body, token) && !strings.Contains(name, token) && bytes.Contains(rec.Body.Bytes(), []byte(token)) {
			t.Fatalf("%s %s: the API token is in the answer: %s", r.method, target, rec.Body.String())
		}
		if !withToken && r.method != http.MethodGet && rec.Code != http.StatusUnauthorized && rec.Code != http.StatusMethodNotAllowed {
			t.Fatalf("%s %s without a token: %d", r.method, target, rec.Code)
		}

		if r.method == http.MethodPut && r.path == "/api/v1/health/override" && withToken {
			healthy, reason := p.Health()
			var o libapi.Override
			switch err := json.Unmarshal([]byte(body), &o); {
			case strings.TrimSpace(body) == "":
				if rec.Code != http.StatusOK || healthy || reason != "marked unhealthy by an operator" {
					t.Fatalf("empty body: %d healthy=%v reason=%q", rec.Code, healthy, reason)
				}
			case err != nil:
				if rec.Code != http.StatusBadRequest || !healthy {
					t.Fatalf("body %q (%v): %d, healthy=%v", body, err, rec.Code, healthy)
				}
			default:
				want := o.Reason
				if want == "" {
					want = "marked unhealthy by an operator"
				}
				if rec.Code != http.StatusOK || healthy || reason != want {
					t.Fatalf("body %q: %d healthy=%v reason=%q, want %q", body, rec.Code, healthy, reason, want)
				}
			}
		}
	})
}
