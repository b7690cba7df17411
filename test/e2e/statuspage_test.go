//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/lib/api"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// TestStatusPage loads the status page of a live proxy in front of two
// clusters in headless Chromium and checks what its script rendered from
// the API. The API is closed to anonymous readers: the browser signs in
// with the read token through its own login dialog (HTTP Basic), and the
// page's fetches then work; without the token it gets nothing.
func TestStatusPage(t *testing.T) {
	chromium := lookupChromium(t)
	tc := startTwoClusters(t, `default-cluster = "east"`, "", withAPI)
	eastID, westID := "east/"+tc.east.Addr(), "west/"+tc.west.Addr()

	// Wait until both clusters are ready with a healthy backend, so that the
	// page has something stable to show.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var clusters []api.Cluster
		require.NoError(c, getAPI(tc.apiAddr, "/api/v1/clusters", &clusters))
		require.Len(c, clusters, 2)
		for _, cl := range clusters {
			require.Equal(c, "ready", cl.State, "cluster %s: %+v", cl.Name, cl)
			require.Equal(c, 1, cl.BackendsHealthy, "cluster %s: %+v", cl.Name, cl)
		}
	}, 60*time.Second, 100*time.Millisecond, "clusters never became ready")

	// One SQL session, held open, on east (the default cluster).
	cfg := testenv.MySQLConfig(tc.mainAddr, testenv.NativeUser, testenv.NativePassword)
	cfg.DBName = ""
	db := testenv.OpenDB(t, cfg)
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctxT(t, 30*time.Second))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	require.Equal(t, portOf(tc.east), queryString(t, conn, "SELECT @@port"))

	// A reload, so that the page has a result to show.
	require.NoError(t, tc.proxy.Signal(syscall.SIGHUP))
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var st api.ConfigStatus
		require.NoError(c, getAPI(tc.apiAddr, "/api/v1/config/status", &st))
		require.Equal(c, "ok", st.LastResult, "%+v", st)
	}, 30*time.Second, 100*time.Millisecond, "the SIGHUP reload was never reported")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var backends []api.Backend
		require.NoError(c, getAPI(tc.apiAddr, "/api/v1/backends", &backends))
		require.Len(c, backends, 2)
		require.Equal(c, 1, backends[0].Sessions+backends[1].Sessions, "%+v", backends)
	}, 30*time.Second, 100*time.Millisecond, "the API never counted the session")

	pageURL := "http://" + tc.apiAddr + "/"

	// Without the token (a browser with no one to fill in its login dialog):
	// the page says how to sign in, and shows no data.
	anon := startBrowser(t, chromium, "", "")
	anon.open(pageURL)
	refused := anon.waitDOM(func(d *dom) bool { return len(d.find("body", "id", "sign-in")) == 1 })
	require.Equal(t, "unauthorized", refused.one(t, "body").attrs["data-state"])
	require.Contains(t, refused.body, "read token")
	require.NotContains(t, refused.body, tc.east.Addr())
	require.Empty(t, refused.find("tr", "class", "cluster"))
	// A wrong token is refused: the browser is asked again, and gets no data.
	wrong := startBrowser(t, chromium, "admin", "not-the-token")
	wrong.open(pageURL)
	require.Eventually(t, func() bool { return len(wrong.authChallenges()) >= 2 }, 60*time.Second, 100*time.Millisecond,
		"a wrong token must be answered with another challenge")
	require.NotContains(t, wrong.eval("document.documentElement.outerHTML"), tc.east.Addr())

	// With the read token (any user name): the page and all its fetches work.
	b := startBrowser(t, chromium, "operator", e2eReadToken)
	b.open(pageURL)
	// The page refreshes every 2 s; on a loaded machine a probe may fail
	// for a moment, so wait for a refresh that shows both backends healthy.
	dom := b.waitDOM(func(d *dom) bool {
		body := d.find("body")
		return len(body) == 1 && body[0].attrs["data-state"] == "ok" &&
			len(d.find("tr", "class", "cluster", "data-backends-healthy", "1")) == 2
	})
	require.Equal(t, []string{"basic " + pageURL}, b.authChallenges(),
		"one login dialog, for the page: its fetches reuse the credentials")
	require.Contains(t, b.requests(), pageURL+"api/v1/sessions", "the page's own fetches went to the API")
	require.Equal(t, "ok", dom.one(t, "body").attrs["data-state"], "every API call should have succeeded")
	require.NotContains(t, dom.one(t, "div", "id", "error-banner").attrs["class"], "visible")

	for _, name := range []string{"east", "west"} {
		row := dom.one(t, "tr", "class", "cluster", "data-cluster", name)
		require.Equal(t, "cluster", row.attrs["class"])
		require.Equal(t, "ready", row.attrs["data-state"], "cluster %s", name)
		require.Equal(t, "1", row.attrs["data-backends-healthy"])
		require.Equal(t, "1", row.attrs["data-backends-total"])
		require.Contains(t, row.text, "ready")
		require.Contains(t, row.text, "1/1")
		require.Contains(t, row.text, "etcd")
		badge := row.find("span", "data-state", "ready")
		require.Len(t, badge, 1)
		require.Contains(t, badge[0].attrs["class"], "state-ready")
	}
	require.Equal(t, "1", dom.one(t, "tr", "class", "cluster", "data-cluster", "east").attrs["data-sessions"])
	require.Equal(t, "0", dom.one(t, "tr", "class", "cluster", "data-cluster", "west").attrs["data-sessions"])

	for id, sessions := range map[string]string{eastID: "1", westID: "0"} {
		row := dom.one(t, "tr", "class", "backend", "data-backend", id)
		require.Equal(t, "backend", row.attrs["class"])
		require.Equal(t, "true", row.attrs["data-healthy"], "backend %s", id)
		require.Equal(t, sessions, row.attrs["data-sessions"], "backend %s", id)
		require.Contains(t, row.text, id)
		require.Contains(t, row.text, "healthy")
		require.NotContains(t, row.text, "unhealthy")
		require.Contains(t, row.text, "10.11-MariaDB") // the version registered in etcd
		require.Equal(t, sessions, row.cell(t, "sessions"))
		require.Equal(t, sessions, dom.one(t, "li", "class", "session-count", "data-backend", id).attrs["data-sessions"])
	}

	sess := dom.find("tr", "class", "session")
	require.Len(t, sess, 1, "one session row")
	require.Equal(t, eastID, sess[0].attrs["data-backend"])
	require.Equal(t, "east", sess[0].attrs["data-cluster"])
	require.Equal(t, "false", sess[0].attrs["data-in-transaction"])
	require.Equal(t, testenv.NativeUser, sess[0].cell(t, "user"))
	require.Equal(t, eastID, sess[0].cell(t, "backend"))

	result := dom.one(t, "span", "id", "config-last-result")
	require.Equal(t, "ok", result.attrs["data-result"])
	require.Equal(t, "ok", result.text)
	require.Equal(t, "sighup", dom.one(t, "dd", "id", "config-last-source").text)
	require.Contains(t, dom.one(t, "dd", "id", "config-last-reload").text, "ago")
	require.Equal(t, "healthy", dom.one(t, "span", "id", "health-status").attrs["data-status"])
}

// TestStatusPageRendering serves the page with canned API answers: every
// cluster state, an unhealthy backend, unknown metrics, a failed reload, and
// markup in every string, which must show up as text. Then the API goes
// away and the page must say so while keeping the last data.
func TestStatusPageRendering(t *testing.T) {
	chromium := lookupChromium(t)
	root, err := testenv.ModuleRoot()
	require.NoError(t, err)
	page, err := os.ReadFile(filepath.Join(root, "pkg", "server", "api", "status.html"))
	require.NoError(t, err)

	const evil = `<img src=x onerror="document.title='pwned'">`
	cpu, probe := 0.5, time.Now().Add(-3*time.Second)
	docs := map[string]any{
		"/api/v1/health": api.Health{Status: api.StatusUnhealthy, UnhealthyReason: "maintenance <b>now</b>",
			Clusters: map[string]string{}, Warnings: []string{"cluster west is stale: " + evil}},
		"/api/v1/clusters": []api.Cluster{
			{Name: "east", State: "ready", Source: "etcd", BackendsTotal: 2, BackendsHealthy: 1, Sessions: 1},
			{Name: "west", State: "stale", Source: "etcd", LastError: "etcd down " + evil},
			{Name: "north", State: "connecting", Source: "etcd"},
			{Name: "south", State: "draining", Source: "static"},
			{Name: evil, State: "failed", Source: "static", LastError: "<script>document.title='pwned'</script>"},
		},
		"/api/v1/backends": []api.Backend{
			{ID: "east/10.0.0.1:4000", Cluster: "east", Addr: "10.0.0.1:4000", Healthy: true, Sessions: 1,
				CPU: &cpu, Version: "8.5.0-TiDB", LastProbe: &probe},
			{ID: "east/10.0.0.2:4000", Cluster: "east", Addr: "10.0.0.2:4000", Reason: "refused <i>x</i>",
				Drained: true, DrainDeadline: &probe},
		},
		"/api/v1/migrations": api.MigrationsDoc{Pending: 2, Totals: map[string]int64{"ok": 5, "closed": 1},
			Drains: []api.BackendDrain{{ID: "east/10.0.0.2:4000", Drained: true, Deadline: &probe, Sessions: 1}},
			Recent: []api.Migration{
				{Time: time.Now().Add(-time.Second), SessionID: 9, Cluster: "east", From: "10.0.0.2:4000",
					Reason: "drain", Result: "closed", Error: "holds GET_LOCK <b>x</b>"},
				{Time: time.Now().Add(-2 * time.Second), SessionID: 8, Cluster: "east", From: "10.0.0.2:4000",
					To: "10.0.0.1:4000", Reason: "drain", Result: "ok", DurationMS: 1.25},
			}},
		"/api/v1/sessions": []api.Session{{ID: 7, User: "<u>eve</u>", Cluster: "east",
			Backend: "east/10.0.0.1:4000", InTransaction: true, Since: time.Now().Add(-time.Minute),
			NotMigratableReason: "in a transaction"}},
		"/api/v1/digests": api.DigestList{Enabled: true, Sort: "total", Total: 2, Digests: []api.Digest{
			{Cluster: "east", User: "app", Schema: "shop", Digest: "ab12", DigestText: "select * from `t` where `id` = ? " + evil,
				SampleText: "SELECT * FROM t WHERE id = 1 " + evil, Count: 42, Errors: 2, AvgMs: 1.5, P99Ms: 3.25, TotalMs: 63, RowsSent: 40},
		}, Others: []api.Digest{{Cluster: "east", Count: 7}}},
		"/api/v1/config/status": api.ConfigStatus{LastResult: "error", LastSource: "api", LastReload: time.Now(),
			LastError: "line 3: bad <value>", NeedsRestart: []string{"proxy.addr"}, Reloads: 2, Failures: 1},
	}
	var down atomic.Bool
	var served atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write(page)
			return
		}
		doc, ok := docs[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if down.Load() && served.Add(1) > int32(len(docs)) { // the first refresh still works
			// A closed connection, as when nothing listens: fetch fails.
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					_ = c.Close()
				}
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/api/v1/health" {
			w.WriteHeader(http.StatusServiceUnavailable) // as the API answers when unhealthy
		}
		_ = json.NewEncoder(w).Encode(doc)
	}))
	t.Cleanup(srv.Close)

	dom := dumpDOM(t, chromium, srv.URL+"/")
	require.Equal(t, "ok", dom.one(t, "body").attrs["data-state"])
	require.NotContains(t, dom.one(t, "div", "id", "error-banner").attrs["class"], "visible")
	for _, tag := range []string{"<img", "<b>now", "<i>x", "<u>eve", "<value>"} {
		require.False(t, strings.Contains(dom.body, tag), "API strings must be inserted as text, found %s", tag)
	}
	require.Equal(t, 1, dom.scripts, "API strings must not add scripts")
	require.False(t, strings.Contains(dom.raw, "pwned</title>"), "a script from the API ran")

	for name, state := range map[string]string{"east": "ready", "west": "stale", "north": "connecting",
		"south": "draining", evil: "failed"} {
		row := dom.one(t, "tr", "class", "cluster", "data-cluster", name)
		require.Equal(t, state, row.attrs["data-state"])
		badge := row.find("span", "data-state", state)
		require.Len(t, badge, 1)
		require.Contains(t, badge[0].attrs["class"], "state-"+state)
		require.Equal(t, state, badge[0].text)
	}
	failed := dom.one(t, "tr", "class", "cluster", "data-cluster", evil)
	require.Equal(t, evil, failed.cell(t, "name"))
	require.Equal(t, "<script>document.title='pwned'</script>", failed.cell(t, "last-error"))
	require.Equal(t, "1/2", dom.one(t, "tr", "class", "cluster", "data-cluster", "east").cell(t, "backends"))
	require.Contains(t, dom.one(t, "tr", "class", "cluster", "data-cluster", "west").cell(t, "last-error"), "etcd down "+evil)

	up := dom.one(t, "tr", "class", "backend", "data-backend", "east/10.0.0.1:4000")
	require.Equal(t, "50.0%", up.cell(t, "cpu"))
	require.Equal(t, "\u2013", up.cell(t, "memory"))
	require.Equal(t, "8.5.0-TiDB", up.cell(t, "version"))
	require.Contains(t, up.cell(t, "probe"), "s ago")
	bad := dom.one(t, "tr", "class", "backend", "data-backend", "east/10.0.0.2:4000")
	require.Equal(t, "false", bad.attrs["data-healthy"])
	require.Contains(t, bad.cell(t, "health"), "refused <i>x</i>")
	require.Equal(t, "\u2013", bad.cell(t, "cpu"))
	require.Equal(t, "never", bad.cell(t, "probe"))
	require.Len(t, dom.find("section", "data-cluster", "north"), 1, "a cluster without backends still has its section")

	require.Equal(t, "true", bad.attrs["data-drained"])
	require.Contains(t, bad.cell(t, "health"), "drained")
	require.Equal(t, "false", up.attrs["data-drained"])
	mv := dom.one(t, "tr", "class", "migration", "data-session", "8")
	require.Equal(t, "ok", mv.attrs["data-result"])
	require.Equal(t, "10.0.0.1:4000", mv.cell(t, "to"))
	require.Equal(t, "1.3", mv.cell(t, "ms"))
	closed := dom.one(t, "tr", "class", "migration", "data-session", "9")
	require.Equal(t, "holds GET_LOCK <b>x</b>", closed.cell(t, "error"))
	require.Equal(t, "5", dom.one(t, "li", "class", "migration-total", "data-result", "ok").find("b")[0].text)
	require.Len(t, dom.find("li", "class", "drain", "data-backend", "east/10.0.0.2:4000"), 1)
	require.Contains(t, dom.one(t, "span", "id", "migrations-pending").text, "2 pending")

	s := dom.one(t, "tr", "data-session", "7")
	require.Equal(t, "<u>eve</u>", s.cell(t, "user"))
	require.Equal(t, "yes", s.cell(t, "in-transaction"))
	require.Equal(t, "true", s.attrs["data-in-transaction"])
	require.Equal(t, "false", s.attrs["data-migratable"])
	require.Equal(t, "no: in a transaction", s.cell(t, "movable"))

	dg := dom.one(t, "tr", "class", "digest", "data-digest", "ab12")
	require.Equal(t, "42", dg.attrs["data-count"])
	require.Equal(t, "2", dg.cell(t, "errors"))
	require.Equal(t, "3.250", dg.cell(t, "p99"))
	require.Equal(t, "app", dg.cell(t, "user"))
	require.Equal(t, "select * from `t` where `id` = ? "+evil, dg.cell(t, "statement"))
	require.Equal(t, "7", dom.one(t, "tr", "class", "digest-others").cell(t, "count"))

	require.Equal(t, "unhealthy", dom.one(t, "span", "id", "health-status").attrs["data-status"])
	require.Equal(t, "maintenance <b>now</b>", dom.one(t, "dd", "id", "health-reason").text)
	require.Contains(t, dom.one(t, "li", "class", "warning").text, evil)
	require.Equal(t, "error", dom.one(t, "span", "id", "config-last-result").attrs["data-result"])
	require.Equal(t, "api", dom.one(t, "dd", "id", "config-last-source").text)
	require.Equal(t, "line 3: bad <value>", dom.one(t, "dd", "id", "config-last-error").text)
	require.Equal(t, "proxy.addr", dom.one(t, "li", "class", "needs-restart").text)

	// The API stops answering after the first refresh: the banner says so and
	// the data from the first refresh stays.
	down.Store(true)
	dom = dumpDOM(t, chromium, srv.URL+"/")
	require.Equal(t, "error", dom.one(t, "body").attrs["data-state"])
	banner := dom.one(t, "div", "id", "error-banner")
	require.Contains(t, banner.attrs["class"], "visible")
	require.Contains(t, banner.text, "Cannot reach the Switchyard API")
	require.Contains(t, banner.text, "Showing data from")
	require.Equal(t, "ready", dom.one(t, "tr", "class", "cluster", "data-cluster", "east").attrs["data-state"])
}

// getAPI GETs path from the API at addr into v.
func getAPI(addr, path string, v any) error {
	resp, err := readClient.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	return json.Unmarshal(body, v)
}

// lookupChromium finds Chromium. A missing browser fails the test: CI
// installs it (scripts/install-deps.sh), and a skip would hide that.
func lookupChromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SWITCHYARD_CHROMIUM"); p != "" {
		return p
	}
	for _, c := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	t.Fatal("chromium is not installed: run scripts/install-deps.sh (apt-get install chromium), " +
		"or set SWITCHYARD_CHROMIUM to the binary")
	return ""
}

// dumpDOM loads pageURL in headless Chromium, lets the page run for 10 s of
// virtual time (which does not advance while fetches are in flight) and
// parses the DOM it ends with.
func dumpDOM(t *testing.T, bin, pageURL string) *dom {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin,
		"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--disable-extensions",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+filepath.Join(dir, "profile"),
		"--virtual-time-budget=10000", "--dump-dom", pageURL)
	// HOME too: NSS and the launcher write under it.
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_CACHE_HOME="+dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Its own process group, so that the renderer and helper processes go
	// with the browser; the kernel kills the browser if the test binary dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	require.NoError(t, cmd.Start())
	pid := cmd.Process.Pid
	err := cmd.Wait()
	// Helpers that outlived the browser are still in its group.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	require.NoError(t, err, "chromium (pid %d) failed; stderr:\n%s", pid, stderr.String())
	out := stdout.String()
	require.Contains(t, out, "</html>", "no DOM from chromium; stderr:\n%s", stderr.String())
	d := parseDOM(out)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("DOM of %s:\n%s", pageURL, d.body)
		}
	})
	return d
}

// dom is Chromium's serialised DOM with scripts and styles removed, so
// that searches only see markup and text. It is searched with regular
// expressions: Chromium writes well-formed HTML with every attribute value
// in double quotes and '"' escaped inside them.
type dom struct {
	raw     string // as dumped
	body    string // without <script> and <style> contents
	scripts int    // <script> elements in raw
}

var (
	scriptRE = regexp.MustCompile(`(?s)<script\b[^>]*>.*?</script>|<style\b[^>]*>.*?</style>`)
	// A start or end tag; attribute values may hold '>'.
	tagRE  = regexp.MustCompile(`</?([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[^\s"'>/=]+(?:="[^"]*")?)*)\s*/?>`)
	attrRE = regexp.MustCompile(`([^\s"'>/=]+)(?:="([^"]*)")?`)
)

func parseDOM(raw string) *dom {
	return &dom{raw: raw, body: scriptRE.ReplaceAllString(raw, ""), scripts: len(regexp.MustCompile(`<script\b`).FindAllString(raw, -1))}
}

// element is one element found in a dom: its attributes and its text.
type element struct {
	attrs map[string]string
	inner string // markup between the tags
	text  string // inner without tags, unescaped and trimmed
}

// find returns the tag elements with the given attributes, as pairs of
// name and value; "class" matches one of the element's classes.
func (d *dom) find(tag string, attrs ...string) []element { return findIn(d.body, tag, attrs) }

// one is the only element that find returns.
func (d *dom) one(t *testing.T, tag string, attrs ...string) element {
	t.Helper()
	els := d.find(tag, attrs...)
	require.Len(t, els, 1, "<%s %q> in the page", tag, attrs)
	return els[0]
}

func (e element) find(tag string, attrs ...string) []element { return findIn(e.inner, tag, attrs) }

// cell is the text of the element's <td> with the given class.
func (e element) cell(t *testing.T, class string) string {
	t.Helper()
	for _, td := range e.find("td") {
		for _, c := range strings.Fields(td.attrs["class"]) {
			if c == class {
				return td.text
			}
		}
	}
	require.Failf(t, "no cell", "no <td class=%q> in %s", class, e.inner)
	return ""
}

// matches reports whether attrs has every name=value pair of want.
func matches(attrs map[string]string, want []string) bool {
	for i := 0; i+1 < len(want); i += 2 {
		v, ok := attrs[want[i]]
		if want[i] == "class" {
			ok = ok && slices.Contains(strings.Fields(v), want[i+1])
		} else {
			ok = ok && v == want[i+1]
		}
		if !ok {
			return false
		}
	}
	return true
}

func findIn(s, tag string, want []string) []element {
	var out []element
	tags := tagRE.FindAllStringSubmatchIndex(s, -1)
	for i, m := range tags {
		name := s[m[2]:m[3]]
		if s[m[0]+1] == '/' || !strings.EqualFold(name, tag) {
			continue
		}
		attrs := map[string]string{}
		for _, a := range attrRE.FindAllStringSubmatch(s[m[4]:m[5]], -1) {
			attrs[a[1]] = html.UnescapeString(a[2])
		}
		if !matches(attrs, want) {
			continue
		}
		// The matching end tag: count nested tags of the same name.
		end, depth := len(s), 0
		for _, n := range tags[i+1:] {
			if !strings.EqualFold(s[n[2]:n[3]], tag) {
				continue
			}
			if s[n[0]+1] != '/' {
				depth++
				continue
			}
			if depth == 0 {
				end = n[0]
				break
			}
			depth--
		}
		inner := s[m[1]:end]
		text := html.UnescapeString(tagRE.ReplaceAllString(inner, ""))
		out = append(out, element{attrs: attrs, inner: inner, text: strings.TrimSpace(text)})
	}
	return out
}
