package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/lib/api"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// An API beyond loopback without a credential is refused with its line:
// by --check-config, at start-up (the proxy exits 1 and listens on
// nothing), and on reload (the running config stays, and says why).
func TestOpenAPIRefused(t *testing.T) {
	bin := testenv.BuildProxy(t)
	m := testenv.SharedMariaDB(t)
	addr, apiPort := testenv.FreeAddr(t), testenv.FreeAddr(t)
	_, port, err := net.SplitHostPort(apiPort)
	require.NoError(t, err)
	open := fmt.Sprintf("[proxy]\naddr = %q\n\n[api]\naddr = \"0.0.0.0:%s\"\n\n[[cluster]]\nname = \"a\"\ninstances = [%q]\n",
		addr, port, m.Addr())
	wantLine := fmt.Sprintf(`line 5: api.addr "0.0.0.0:%s" listens beyond this host with no credential`, port)
	path := filepath.Join(t.TempDir(), "open.toml")
	require.NoError(t, os.WriteFile(path, []byte(open), 0o600))

	for _, flag := range []string{"--check-config", "--config"} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, bin, flag, path)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		cancel()
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee, "%s must fail: %s", flag, stderr.String())
		require.Equal(t, 1, ee.ExitCode(), flag)
		require.Contains(t, stderr.String(), path+": "+wantLine, flag)
	}
	_, err = net.DialTimeout("tcp", addr, time.Second)
	require.Error(t, err, "a refused config starts nothing")

	// On reload: the running proxy keeps its config and reports the line.
	apiAddr := testenv.FreeAddr(t)
	good := reloadConfig(addr, apiAddr, m.Addr(), "", "")
	p := testenv.StartProxy(t, bin, good)
	require.NoError(t, p.WriteConfig(open))
	require.NoError(t, p.Signal(syscall.SIGHUP))
	var st api.ConfigStatus
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		st = api.ConfigStatus{}
		require.Equal(c, http.StatusOK, getJSON(t, "http://"+apiAddr+"/api/v1/config/status", &st))
		require.Equal(c, "error", st.LastResult)
	}, 30*time.Second, 100*time.Millisecond)
	require.Contains(t, st.LastError, wantLine)
	status, body, err := apiCall(http.MethodGet, "http://"+apiAddr+"/api/v1/config", e2eReadToken, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, string(body), fmt.Sprintf("addr = %q", apiAddr), "the running config is unchanged")
	_, err = net.DialTimeout("tcp", "127.0.0.2:"+port, time.Second)
	require.Error(t, err, "nothing listens on the refused address")
}

// With no token configured (the default on loopback), a PUT of the config
// is refused with a message that says to set api.token, and neither the
// file nor the running config changes; pprof and the other reads are
// closed, the public endpoints open.
func TestNoTokenRefusesChanges(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	addr, apiAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	cfg := fmt.Sprintf("[proxy]\naddr = %q\n\n[api]\naddr = %q\n\n[[cluster]]\nname = \"a\"\ninstances = [%q]\n", addr, apiAddr, m.Addr())
	p := testenv.StartProxy(t, testenv.BuildProxy(t), cfg)
	require.Eventually(t, func() bool {
		status, _, err := apiCall(http.MethodGet, "http://"+apiAddr+"/readyz", "", nil)
		return err == nil && status == http.StatusOK
	}, 30*time.Second, 100*time.Millisecond)

	changed := strings.Replace(cfg, `name = "a"`, `name = "evil"`, 1)
	for _, tok := range []string{"", "guess"} {
		status, body, err := apiCall(http.MethodPut, "http://"+apiAddr+"/api/v1/config", tok, strings.NewReader(changed))
		require.NoError(t, err)
		require.Equal(t, http.StatusForbidden, status)
		var e api.Error
		require.NoError(t, json.Unmarshal(body, &e))
		require.Equal(t, "NO_ADMIN_CREDENTIAL", e.Code)
		require.Contains(t, e.Message, "set api.token")
	}
	data, err := os.ReadFile(p.ConfigPath)
	require.NoError(t, err)
	require.Equal(t, testenv.WithEventLoops(cfg), string(data), "the file is unchanged")
	// The running config still routes to cluster a.
	conn := openConn(t, addr, testenv.NativeUser)
	require.Equal(t, portOf(m), queryString(t, conn, "SELECT @@port"))
	require.NoError(t, conn.Close())
	require.NotContains(t, p.LogContents(), "evil")

	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/api/v1/sessions", "/api/v1/config"} {
		status, body, err := apiCall(http.MethodGet, "http://"+apiAddr+path, "", nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusForbidden, status, path)
		require.NotContains(t, string(body), "goroutine", path)
	}
	for _, path := range []string{"/livez", "/readyz", "/metrics"} {
		status, _, err := apiCall(http.MethodGet, "http://"+apiAddr+path, "", nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, status, path)
	}
}

// pprof is closed without a token and open with the read token.
func TestPprofNeedsToken(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	addr, apiAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	testenv.StartProxy(t, testenv.BuildProxy(t), reloadConfig(addr, apiAddr, m.Addr(), "", ""))
	url := "http://" + apiAddr + "/debug/pprof/goroutine?debug=1"
	require.Eventually(t, func() bool {
		status, _, err := apiCall(http.MethodGet, url, e2eReadToken, nil)
		return err == nil && status == http.StatusOK
	}, 30*time.Second, 100*time.Millisecond)
	for _, tok := range []string{"", "wrong"} {
		status, body, err := apiCall(http.MethodGet, url, tok, nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusUnauthorized, status)
		require.JSONEq(t, `{"code":"UNAUTHORIZED","message":"authentication required"}`, string(body))
	}
	status, body, err := apiCall(http.MethodGet, url, e2eReadToken, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, string(body), "goroutine profile")
}
