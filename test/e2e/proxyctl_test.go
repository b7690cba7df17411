package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/lib/api"
	"github.com/switchyard-db/switchyard/test/etcdtest"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// ctlToken is the admin token of the proxyctl tests, ctlReadToken the read
// token.
const (
	ctlToken     = "e2e-token"
	ctlReadToken = "e2e-read-only"
)

// ctlProxy is a live proxy with its API on (token ctlToken) in front of
// clusters east (the default) and west, each with its own etcd and MariaDB.
type ctlProxy struct {
	etcdEast, etcdWest *etcdtest.Etcd
	east, west         *testenv.MariaDB
	proxy              *testenv.Proxy
	mainAddr, apiAddr  string
}

// config renders the proxy's config with the given clusters. The [api]
// section never changes: its settings need a restart.
func (p *ctlProxy) config(clusters ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[proxy]\naddr = %q\ndefault-cluster = \"east\"\n\n", p.mainAddr)
	fmt.Fprintf(&b, "[api]\naddr = %q\ntoken = %q\nread-token = %q\n\n", p.apiAddr, ctlToken, ctlReadToken)
	b.WriteString("[health-check]\ninterval = \"200ms\"\ntimeout = \"1s\"\nfailures-to-unhealthy = 2\n\n")
	b.WriteString("[log]\nlevel = \"debug\"\n")
	endpoints := map[string]string{"east": p.etcdEast.Endpoint, "west": p.etcdWest.Endpoint}
	for _, name := range clusters {
		fmt.Fprintf(&b, "\n[[cluster]]\nname = %q\netcd-endpoints = [%q]\n", name, endpoints[name])
	}
	return testenv.WithEventLoops(b.String())
}

func startCtlProxy(t *testing.T) *ctlProxy {
	p := &ctlProxy{
		etcdEast: etcdtest.Start(t),
		etcdWest: etcdtest.Start(t),
		east:     testenv.SharedMariaDB(t),
		west:     testenv.StartMariaDB(t, testenv.MariaDBOptions{}),
		mainAddr: testenv.FreeAddr(t),
		apiAddr:  testenv.FreeAddr(t),
	}
	etcdtest.Register(t, p.etcdEast.Client, tidbPrefix, p.east.Addr(), etcdtest.InfoJSON("10.11-MariaDB", 0, ""), 30)
	etcdtest.Register(t, p.etcdWest.Client, tidbPrefix, p.west.Addr(), etcdtest.InfoJSON("10.11-MariaDB", 0, ""), 30)
	p.proxy = testenv.StartProxy(t, testenv.BuildProxy(t), p.config("east", "west"))
	return p
}

// buildProxyctl builds ./cmd/proxyctl into the test's temporary directory.
func buildProxyctl(t *testing.T) string {
	t.Helper()
	root, err := testenv.ModuleRoot()
	require.NoError(t, err)
	bin := filepath.Join(t.TempDir(), "proxyctl")
	cmd := exec.CommandContext(ctxT(t, 5*time.Minute), "go", "build", "-o", bin, "./cmd/proxyctl")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build ./cmd/proxyctl:\n%s", out)
	return bin
}

type ctlResult struct {
	code           int
	stdout, stderr string
}

// ctl runs proxyctl against the API named by SWITCHYARD_API, with env added
// to an environment that holds no other SWITCHYARD_ variable.
func ctl(t *testing.T, bin string, env []string, args ...string) ctlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SWITCHYARD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := ctlResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		res.code = ee.ExitCode()
	} else {
		require.NoError(t, err, "running proxyctl %v", args)
	}
	t.Logf("$ proxyctl %s\n%s%s(exit %d)", strings.Join(args, " "), res.stdout, res.stderr, res.code)
	return res
}

// row returns the fields of the table line whose first field is key.
func row(t *testing.T, table, key string) []string {
	t.Helper()
	for _, line := range strings.Split(table, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == key {
			return f
		}
	}
	require.Failf(t, "no table row", "no row %q in:\n%s", key, table)
	return nil
}

func TestProxyctl(t *testing.T) {
	bin := buildProxyctl(t)
	p := startCtlProxy(t)
	anonymous := []string{"SWITCHYARD_API=http://" + p.apiAddr}
	env := append([]string{"SWITCHYARD_TOKEN=" + ctlReadToken}, anonymous...)
	withToken := append([]string{"SWITCHYARD_TOKEN=" + ctlToken}, anonymous...)
	// Reads with the read token; changes need withToken.
	run := func(args ...string) ctlResult { return ctl(t, bin, env, args...) }
	eastID, westID := "east/"+p.east.Addr(), "west/"+p.west.Addr()

	// The clusters become ready once each etcd has answered and each
	// backend passed a probe.
	var clusters []api.Cluster
	require.Eventually(t, func() bool {
		res := run("-o", "json", "clusters")
		clusters = nil
		if res.code != 0 || json.Unmarshal([]byte(res.stdout), &clusters) != nil || len(clusters) != 2 {
			return false
		}
		return clusters[0].State == "ready" && clusters[0].BackendsHealthy == 1 &&
			clusters[1].State == "ready" && clusters[1].BackendsHealthy == 1
	}, 60*time.Second, 200*time.Millisecond, "clusters never became ready: %+v", clusters)

	// Without a token nothing but the public endpoints answers.
	res := ctl(t, bin, anonymous, "clusters")
	require.Equal(t, 1, res.code)
	require.Equal(t, "UNAUTHORIZED: authentication required (set --token or SWITCHYARD_TOKEN)\n", res.stderr)
	res = ctl(t, bin, append([]string{"SWITCHYARD_TOKEN=wrong"}, anonymous...), "sessions")
	require.Equal(t, 1, res.code)
	require.Equal(t, "UNAUTHORIZED: authentication required\n", res.stderr)

	res = run("clusters")
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, []string{"NAME", "STATE", "SOURCE", "BACKENDS", "SESSIONS", "GEN", "LAST-ERROR"}, row(t, res.stdout, "NAME"))
	require.Equal(t, []string{"ready", "etcd", "1/1"}, row(t, res.stdout, "east")[1:4])
	require.Equal(t, []string{"ready", "etcd", "1/1"}, row(t, res.stdout, "west")[1:4])

	res = run("health")
	require.Equal(t, 0, res.code, "health: %s%s", res.stdout, res.stderr)
	require.Equal(t, []string{"STATUS", "healthy"}, row(t, res.stdout, "STATUS"))
	require.Equal(t, []string{"east", "ready"}, row(t, res.stdout, "east"))

	res = run("backends")
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, []string{"yes", "0"}, row(t, res.stdout, eastID)[1:3])
	require.Equal(t, "10.11-MariaDB", row(t, res.stdout, westID)[5])
	res = run("-o", "json", "backends", "--cluster", "west")
	require.Equal(t, 0, res.code, res.stderr)
	var backends []api.Backend
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &backends))
	require.Len(t, backends, 1)
	require.Equal(t, westID, backends[0].ID)
	require.True(t, backends[0].Healthy)
	res = run("backends", "--cluster", "nope")
	require.Equal(t, 1, res.code)
	require.Equal(t, "CLUSTER_NOT_FOUND: no cluster named \"nope\"\n", res.stderr)

	// A session held open shows up, on east.
	cfg := testenv.MySQLConfig(p.mainAddr, testenv.NativeUser, testenv.NativePassword)
	cfg.DBName = ""
	db := testenv.OpenDB(t, cfg)
	conn, err := db.Conn(ctxT(t, 30*time.Second))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	require.Equal(t, portOf(p.east), queryString(t, conn, "SELECT @@port"))
	res = run("sessions")
	require.Equal(t, 0, res.code, res.stderr)
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	require.Len(t, lines, 2, res.stdout)
	f := strings.Fields(lines[1])
	require.Equal(t, []string{testenv.NativeUser, "east", eastID, "no"}, f[1:5])

	// config get shows the running config without its secret.
	res = run("config", "get")
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, p.apiAddr)
	require.Contains(t, res.stdout, p.etcdWest.Endpoint)
	require.NotContains(t, res.stdout, ctlToken)
	require.NotContains(t, res.stdout, ctlReadToken)
	res = run("-o", "json", "config", "get")
	require.Equal(t, 0, res.code, res.stderr)
	var doc map[string]any
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &doc))
	require.Len(t, doc["cluster"], 2)

	dir := t.TempDir()
	// An invalid config is refused: without the admin token, then line by line.
	bad := filepath.Join(dir, "bad.toml")
	require.NoError(t, os.WriteFile(bad, []byte(p.config("east")+"max-conections = 5\n"), 0o644))
	res = ctl(t, bin, anonymous, "config", "set", bad)
	require.Equal(t, 1, res.code)
	require.Contains(t, res.stderr, "UNAUTHORIZED: ")
	res = run("config", "set", bad)
	require.Equal(t, 1, res.code)
	require.Contains(t, res.stderr, "FORBIDDEN: this endpoint needs the admin role")
	res = run("config", "validate", bad)
	require.Equal(t, 1, res.code)
	lineNo := strings.Count(p.config("east"), "\n") + 1
	wantLine := fmt.Sprintf("%s: line %d: unknown key", bad, lineNo)
	require.Contains(t, res.stderr, wantLine)
	res = ctl(t, bin, withToken, "config", "set", bad)
	require.Equal(t, 1, res.code, res.stdout)
	require.Contains(t, res.stderr, "INVALID_CONFIG: ")
	require.Contains(t, res.stderr, wantLine, "set names the file as validate does")
	res = run("clusters")
	require.Equal(t, "ready", row(t, res.stdout, "west")[1], "a rejected config changes nothing")

	// A valid one is applied: west goes away.
	good := filepath.Join(dir, "good.toml")
	require.NoError(t, os.WriteFile(good, []byte(p.config("east")), 0o644))
	res = run("config", "validate", good)
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, good+": configuration is valid\n", res.stdout)
	res = ctl(t, bin, withToken, "config", "set", good)
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, good+": configuration applied")
	require.Contains(t, strings.Join(row(t, res.stdout, "LAST-RELOAD"), " "), "ok via api")
	require.Eventually(t, func() bool {
		res := run("-o", "json", "clusters")
		var cs []api.Cluster
		return res.code == 0 && json.Unmarshal([]byte(res.stdout), &cs) == nil && len(cs) == 1 && cs[0].Name == "east"
	}, 30*time.Second, 200*time.Millisecond, "west was never removed")
	res = run("-o", "json", "config", "status")
	require.Equal(t, 0, res.code, res.stderr)
	var st api.ConfigStatus
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &st))
	require.Equal(t, "ok", st.LastResult)
	require.Equal(t, "api", st.LastSource)
	require.Empty(t, st.NeedsRestart, "the [api] section did not change")

	// drain on/off flips health, and needs the admin token.
	res = run("drain", "on")
	require.Equal(t, 1, res.code)
	require.Contains(t, res.stderr, "FORBIDDEN: ")
	res = ctl(t, bin, withToken, "drain", "on", "--reason", "e2e maintenance")
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, "unhealthy: e2e maintenance")
	res = run("health")
	require.Equal(t, 1, res.code, "a drained proxy is unhealthy")
	require.Contains(t, res.stdout, "unhealthy: e2e maintenance")
	res = ctl(t, bin, withToken, "drain", "off")
	require.Equal(t, 0, res.code, res.stderr)
	res = run("health")
	require.Equal(t, 0, res.code, "health after drain off: %s", res.stdout)

	// backend drain/undrain needs the token, shows in backends and
	// migrations, and names only a backend of that cluster.
	res = run("backend", "drain", eastID)
	require.Equal(t, 1, res.code)
	require.Contains(t, res.stderr, "FORBIDDEN: ")
	res = ctl(t, bin, withToken, "backend", "drain", "west/"+p.east.Addr())
	require.Equal(t, 1, res.code, "east's address is not a backend of west")
	require.Contains(t, res.stderr, "BACKEND_NOT_FOUND")
	res = ctl(t, bin, withToken, "backend", "drain", eastID, "--timeout", "5m")
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, "DRAINED   yes")
	var drainedBackends []api.Backend
	res = run("-o", "json", "backends")
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &drainedBackends))
	for _, b := range drainedBackends {
		require.Equal(t, b.ID == eastID, b.Drained, b.ID)
	}
	res = run("migrations")
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, eastID)
	res = ctl(t, bin, withToken, "backend", "undrain", eastID)
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, "DRAINED   no")

	// An API that is not there: exit 2, one line naming the URL.
	down := testenv.FreeAddr(t)
	res = ctl(t, bin, nil, "--api", "http://"+down, "health")
	require.Equal(t, 2, res.code)
	require.Contains(t, res.stderr, "cannot reach the API at http://"+down+"/api/v1/health")
}
