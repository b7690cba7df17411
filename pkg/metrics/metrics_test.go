package metrics

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/pkg/mysql"
)

// newPopulated returns Metrics with at least one series in every switchyard_*
// family, for tests that look at the whole registry.
func newPopulated(t testing.TB) *Metrics {
	t.Helper()
	src := &fakeSource{}
	src.set(sampleTopology(), map[string]int64{"east/10.0.0.1:4000": 3}, map[string]uint64{"east": 2})
	m := New(src, "v1.2.3", "abc123")
	c := m.ForCluster("east")
	c.SessionStarted()
	c.Observe(mysql.ComQuery, 3*time.Millisecond)
	m.ObserveReload(true, time.Unix(1700000000, 0))
	m.Migration("east", "drain", "ok", 2*time.Millisecond)
	m.SetNotMigratable(func() map[NotMigratableKey]int {
		return map[NotMigratableKey]int{{Cluster: "east", Reason: "transaction"}: 1}
	})
	return m
}

func TestLint(t *testing.T) {
	m := newPopulated(t)
	// Serve once so that the promhttp_* series exist too.
	m.Handler().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/metrics", nil))

	mfs, err := m.Registry().Gather()
	require.NoError(t, err)
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	require.NoError(t, err)
	require.Empty(t, problems)

	for _, name := range []string{
		"switchyard_sessions",
		"switchyard_query_duration_seconds",
		"switchyard_backend_healthy",
		"switchyard_backend_sessions",
		"switchyard_backend_cpu_ratio",
		"switchyard_backend_memory_ratio",
		"switchyard_cluster_state",
		"switchyard_topology_updated_timestamp_seconds",
		"switchyard_topology_etcd_revision",
		"switchyard_etcd_errors_total",
		"switchyard_config_reloads_total",
		"switchyard_config_last_reload_successful",
		"switchyard_config_last_reload_success_timestamp_seconds",
		"switchyard_build_info",
		"go_goroutines",
		"process_start_time_seconds",
		"promhttp_metric_handler_requests_total",
	} {
		require.NotNil(t, family(t, m.Registry(), name), name)
	}
}

func TestBuildInfo(t *testing.T) {
	tests := []struct {
		name, version, gitHash string
		wantVersion, wantHash  string
	}{
		{"set", "v1.2.3", "abc123", "v1.2.3", "abc123"},
		{"empty", "", "", "unknown", "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(nil, tt.version, tt.gitHash)
			require.Equal(t, 1.0, value(t, m.Registry(), "switchyard_build_info",
				"version", tt.wantVersion, "git_hash", tt.wantHash, "go_version", runtime.Version()))
		})
	}
}

func TestObserveReload(t *testing.T) {
	m := New(nil, "", "")
	reg := m.Registry()
	requireText(t, reg, `
		# HELP switchyard_config_last_reload_success_timestamp_seconds Unix time of the last config reload that was applied; 0 before the first.
		# TYPE switchyard_config_last_reload_success_timestamp_seconds gauge
		switchyard_config_last_reload_success_timestamp_seconds 0
		# HELP switchyard_config_last_reload_successful Whether the last config reload was applied (1) or rejected (0).
		# TYPE switchyard_config_last_reload_successful gauge
		switchyard_config_last_reload_successful 0
		# HELP switchyard_config_reloads_total Config reloads attempted, by result (ok or error).
		# TYPE switchyard_config_reloads_total counter
		switchyard_config_reloads_total{result="error"} 0
		switchyard_config_reloads_total{result="ok"} 0
	`, "switchyard_config_reloads_total", "switchyard_config_last_reload_successful",
		"switchyard_config_last_reload_success_timestamp_seconds")

	t0 := time.Unix(1700000000, 500_000_000)
	m.ObserveReload(true, t0)
	require.Equal(t, 1.0, value(t, reg, "switchyard_config_last_reload_successful"))
	require.Equal(t, 1700000000.5, value(t, reg, "switchyard_config_last_reload_success_timestamp_seconds"))

	m.ObserveReload(false, t0.Add(time.Minute))
	require.Equal(t, 0.0, value(t, reg, "switchyard_config_last_reload_successful"))
	// A failure keeps the time of the last success.
	require.Equal(t, 1700000000.5, value(t, reg, "switchyard_config_last_reload_success_timestamp_seconds"))

	// A result older than the last one counts but does not become "last".
	m.ObserveReload(true, t0.Add(time.Second))
	require.Equal(t, 0.0, value(t, reg, "switchyard_config_last_reload_successful"))
	require.Equal(t, 1700000000.5, value(t, reg, "switchyard_config_last_reload_success_timestamp_seconds"))

	m.ObserveReload(true, t0.Add(2*time.Minute))
	require.Equal(t, 1.0, value(t, reg, "switchyard_config_last_reload_successful"))
	require.Equal(t, 1700000120.5, value(t, reg, "switchyard_config_last_reload_success_timestamp_seconds"))

	require.Equal(t, 3.0, value(t, reg, "switchyard_config_reloads_total", "result", "ok"))
	require.Equal(t, 1.0, value(t, reg, "switchyard_config_reloads_total", "result", "error"))
}

func TestHandler(t *testing.T) {
	m := newPopulated(t)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	body := rec.Body.String()
	require.Contains(t, body, `switchyard_build_info{git_hash="abc123",go_version="`+runtime.Version()+`",version="v1.2.3"} 1`)
	require.Contains(t, body, `switchyard_sessions{cluster="east"} 1`)
	require.Contains(t, body, `switchyard_backend_sessions{backend="10.0.0.1:4000",cluster="east"} 3`)
	require.Contains(t, body, "go_goroutines ")
}

func TestNilMetrics(t *testing.T) {
	var m *Metrics
	require.NotPanics(t, func() {
		m.ObserveReload(true, time.Now())
		m.DeleteCluster("east")
		c := m.ForCluster("east")
		require.Nil(t, c)
		c.SessionStarted()
		c.Observe(mysql.ComQuery, time.Millisecond)
		c.SessionEnded()
	})
}

func TestCommandName(t *testing.T) {
	tests := []struct {
		cmd  byte
		want string
	}{
		{mysql.ComQuery, "query"},
		{mysql.ComStmtPrepare, "stmt_prepare"},
		{mysql.ComStmtExecute, "stmt_execute"},
		{mysql.ComStmtFetch, "stmt_fetch"},
		{mysql.ComStmtClose, "stmt_close"},
		{mysql.ComStmtReset, "stmt_reset"},
		{mysql.ComStmtSendLongData, "stmt_send_long_data"},
		{mysql.ComPing, "ping"},
		{mysql.ComInitDB, "init_db"},
		{mysql.ComChangeUser, "change_user"},
		{mysql.ComFieldList, "field_list"},
		{mysql.ComResetConnection, "reset_connection"},
		{mysql.ComSetOption, "set_option"},
		{mysql.ComStatistics, "statistics"},
		{mysql.ComQuit, "quit"},
		{mysql.ComSleep, "other"},
		{mysql.ComBinlogDump, "other"},
		{0xff, "other"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, CommandName(tt.cmd), "command 0x%02x", tt.cmd)
	}
}
