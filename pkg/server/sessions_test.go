package server

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	libapi "github.com/switchyard-db/switchyard/lib/api"
	"github.com/switchyard-db/switchyard/pkg/proxy/backend"
)

// The API shows a session's start in UTC milliseconds and its backend as an ID; a session
// still logging in has no backend.
func TestSessionDoc(t *testing.T) {
	since := time.Date(2024, 5, 17, 11, 29, 18, 123456789, time.FixedZone("CEST", 2*60*60))
	require.Equal(t, libapi.Session{
		ID: 1, ClientAddr: "10.1.0.5:51234", User: "app", DB: "shop", Cluster: "east",
		Backend: "east/10.0.0.1:4000", InTransaction: true, Migratable: false,
		NotMigratableReason: "in a transaction",
		Since:               time.Date(2024, 5, 17, 9, 29, 18, 123000000, time.UTC),
	}, sessionDoc(backend.Info{
		ID: 1, ClientAddr: "10.1.0.5:51234", User: "app", DB: "shop", Cluster: "east",
		Backend: "10.0.0.1:4000", InTransaction: true, PreparedStatements: 2,
		NotMigratableReason: "in a transaction", Since: since,
	}))
	require.Equal(t, libapi.Session{ID: 12, ClientAddr: "10.1.0.7:33000", Since: since.UTC().Truncate(time.Millisecond)},
		sessionDoc(backend.Info{ID: 12, ClientAddr: "10.1.0.7:33000", Since: since}))
}
