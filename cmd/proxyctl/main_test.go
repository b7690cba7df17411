package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchyard-db/switchyard/lib/api"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// testdata is absolute because some tests change directory to get stable
// file names in their output.
var testdata = func() string {
	dir, err := filepath.Abs("testdata")
	if err != nil {
		panic(err)
	}
	return dir
}()

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// now is the clock of every test, so that ages in tables are stable.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// reply is a canned answer.
type reply struct {
	status      int
	contentType string
	body        string
	// asJSON, when set, answers a request that accepts application/json
	// (GET /api/v1/config has both forms).
	asJSON string
}

// jsonReply serializes v compactly, so that -o json visibly re-indents.
func jsonReply(t *testing.T, status int, v any) reply {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return reply{status: status, contentType: "application/json", body: string(b)}
}

// recorded is a request the fake API saw.
type recorded struct {
	method, path, query, auth, accept, contentType, body string
}

// fakeAPI serves canned replies by path and method, answering a wrong
// method and an unknown path the way pkg/server/api does.
type fakeAPI struct {
	t   *testing.T
	srv *httptest.Server

	mu     sync.Mutex
	routes map[string]map[string]reply // path → method → reply
	seen   []recorded
}

func newFakeAPI(t *testing.T) *fakeAPI {
	f := &fakeAPI{t: t, routes: map[string]map[string]reply{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) set(method, path string, r reply) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.routes[path] == nil {
		f.routes[path] = map[string]reply{}
	}
	f.routes[path][method] = r
}

func (f *fakeAPI) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.seen...)
}

// last is the last request; a test fails without one.
func (f *fakeAPI) last() recorded {
	rs := f.requests()
	require.NotEmpty(f.t, rs, "the fake API saw no request")
	return rs[len(rs)-1]
}

func (f *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.seen = append(f.seen, recorded{
		method: r.Method, path: r.URL.EscapedPath(), query: r.URL.RawQuery, auth: r.Header.Get("Authorization"),
		accept: r.Header.Get("Accept"), contentType: r.Header.Get("Content-Type"), body: string(body),
	})
	methods, ok := f.routes[r.URL.EscapedPath()]
	rep, found := methods[r.Method]
	f.mu.Unlock()
	switch {
	case !ok:
		rep = jsonReply(f.t, http.StatusNotFound, api.Error{Code: "NOT_FOUND", Message: "no such endpoint: " + r.URL.Path})
	case !found:
		rep = jsonReply(f.t, http.StatusMethodNotAllowed, api.Error{Code: "METHOD_NOT_ALLOWED",
			Message: fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.Path)})
	}
	if rep.asJSON != "" && strings.Contains(r.Header.Get("Accept"), "application/json") {
		rep.contentType, rep.body = "application/json", rep.asJSON
	}
	if rep.contentType != "" {
		w.Header().Set("Content-Type", rep.contentType)
	}
	w.WriteHeader(rep.status)
	_, _ = io.WriteString(w, rep.body)
}

// result is one run of proxyctl.
type result struct {
	code           int
	stdout, stderr string
}

// transcript is what golden files hold: the command line (without --api),
// its output and its exit status.
func (r result) transcript(args []string) string {
	var b strings.Builder
	shown := make([]string, len(args))
	for i, a := range args {
		shown[i] = a
		if strings.ContainsAny(a, " \t\"'") {
			shown[i] = strconv.Quote(a)
		}
	}
	fmt.Fprintf(&b, "$ proxyctl %s\n%s", strings.Join(shown, " "), r.stdout)
	if r.stderr != "" {
		fmt.Fprintf(&b, "--- stderr\n%s", r.stderr)
	}
	fmt.Fprintf(&b, "--- exit %d\n", r.code)
	return b.String()
}

// runWith runs proxyctl with env as its whole environment and stdin.
func runWith(env map[string]string, stdin string, args ...string) result {
	var stdout, stderr bytes.Buffer
	a := &app{
		stdin:  strings.NewReader(stdin),
		stdout: &stdout,
		stderr: &stderr,
		getenv: func(k string) string { return env[k] },
		now:    func() time.Time { return now },
	}
	code := a.run(args)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// run runs proxyctl against the fake API with an empty environment.
func (f *fakeAPI) run(args ...string) result {
	return runWith(nil, "", append([]string{"--api", f.srv.URL}, args...)...)
}

// golden compares got with testdata/name.golden; -update rewrites it.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join(testdata, name+".golden")
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./cmd/proxyctl -update to create it")
	require.Equal(t, string(want), got)
}
