package metrics

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestMigrationMetrics(t *testing.T) {
	m := New(nil, "v", "h")
	m.Migration("east", "drain", "ok", 3*time.Millisecond)
	m.Migration("east", "drain", "ok", 5*time.Millisecond)
	m.Migration("east", "load-sessions", "refused", 0)
	m.Migration("west", "failover", "failed", time.Second)
	g := m.Registry()
	require.Equal(t, 2.0, value(t, g, "switchyard_migrations_total", "cluster", "east", "reason", "drain", "result", "ok"))
	require.Equal(t, 1.0, value(t, g, "switchyard_migrations_total", "cluster", "east", "reason", "load-sessions", "result", "refused"))
	h := find(t, g, "switchyard_migration_duration_seconds", "cluster", "east", "result", "ok")
	require.NotNil(t, h)
	require.Equal(t, uint64(2), h.GetHistogram().GetSampleCount())
	require.InDelta(t, 0.008, h.GetHistogram().GetSampleSum(), 1e-9)
	require.Nil(t, find(t, g, "switchyard_migration_duration_seconds", "cluster", "east", "result", "refused"),
		"a refusal before any work has no duration")

	// Absent until a source is set; then computed at every scrape.
	require.Nil(t, family(t, g, "switchyard_sessions_not_migratable"))
	n := 3
	m.SetNotMigratable(func() map[NotMigratableKey]int {
		return map[NotMigratableKey]int{{"east", "in a transaction"}: n, {"west", "holds GET_LOCK"}: 1}
	})
	require.Equal(t, 3.0, value(t, g, "switchyard_sessions_not_migratable", "cluster", "east", "reason", "in a transaction"))
	n = 0
	require.Equal(t, 0.0, value(t, g, "switchyard_sessions_not_migratable", "cluster", "east", "reason", "in a transaction"))

	m.DeleteCluster("east")
	require.Nil(t, find(t, g, "switchyard_migrations_total", "cluster", "east", "reason", "drain", "result", "ok"))
	require.NotNil(t, find(t, g, "switchyard_migrations_total", "cluster", "west", "reason", "failover", "result", "failed"))

	var nilM *Metrics
	nilM.Migration("x", "y", "z", time.Second)
	nilM.SetNotMigratable(nil)
}
