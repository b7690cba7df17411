package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/lib/api"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// The proxy logs to proxy.log beside proxy.toml here, as in the playground
// (issue 14): one bad edit is rejected once, not again each time the
// rejection's own log line lands beside the config; reverting the edit
// clears the failure (status, health warning, reload metric) without SIGHUP.
func TestBadEditRejectedOnceAndRevertClears(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	addr, apiAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	good := reloadConfig(addr, apiAddr, m.Addr(), "", "")
	p := testenv.StartProxy(t, testenv.BuildProxy(t), good)
	apiURL := "http://" + apiAddr
	reloadMetric := func() string {
		resp, err := http.Get(apiURL + "/metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "switchyard_config_last_reload_successful ") {
				return strings.TrimPrefix(line, "switchyard_config_last_reload_successful ")
			}
		}
		return ""
	}

	require.NoError(t, p.WriteConfig(strings.Replace(good, `interval = "200ms"`, `interval = "1 second"`, 1)))
	var st api.ConfigStatus
	require.Eventually(t, func() bool {
		getJSON(t, apiURL+"/api/v1/config/status", &st)
		return st.LastResult == "error"
	}, 10*time.Second, 20*time.Millisecond)
	require.Contains(t, st.LastError, `invalid duration "1 second"`)
	require.Equal(t, "0", reloadMetric())
	time.Sleep(2 * time.Second) // many debounce periods and a content poll
	var later api.ConfigStatus
	getJSON(t, apiURL+"/api/v1/config/status", &later)
	require.Equal(t, st.Reloads, later.Reloads, "the rejected file was reloaded again without changing")
	require.Equal(t, 1, strings.Count(p.LogContents(), "config rejected; the running config is unchanged"))

	require.NoError(t, p.WriteConfig(good))
	require.Eventually(t, func() bool {
		getJSON(t, apiURL+"/api/v1/config/status", &st)
		return st.LastResult == "ok"
	}, 10*time.Second, 20*time.Millisecond, "reverting the file never cleared the failure: %+v", st)
	require.Equal(t, "1", reloadMetric())
	var h api.Health
	getJSON(t, apiURL+"/api/v1/health", &h)
	for _, w := range h.Warnings {
		require.NotContains(t, w, "config reload failed")
	}
}
