package register

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/switchyard-db/switchyard/test/etcdtest"
)

// httpGet does one request without keep-alive, so that no client
// connection outlives the test.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestStatusFollowsBackend(t *testing.T) {
	te := etcdtest.Start(t)
	be := startBackend(t, "8.0.36-fake")
	r := startRegistrar(t, Config{EtcdEndpoints: []string{te.Endpoint}, Addr: be.addr()})
	require.Eventually(t, func() bool { return r.Version() == "8.0.36-fake" }, waitFor, tick,
		"the version is read from the greeting")
	url := "http://" + r.StatusAddr().String() + "/status"

	code, body := httpGet(t, url)
	require.Equal(t, http.StatusOK, code, body)
	var st map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	require.Equal(t, map[string]any{"connections": float64(0), "version": "8.0.36-fake", "git_hash": gitHash}, st)

	be.stop()
	code, body = httpGet(t, url)
	require.Equal(t, http.StatusInternalServerError, code)
	require.Contains(t, body, "not accepting connections")
	require.Contains(t, body, be.addr())

	// Not a TiDB endpoint we serve.
	code, _ = httpGet(t, "http://"+r.StatusAddr().String()+"/config")
	require.Equal(t, http.StatusNotFound, code)
}
