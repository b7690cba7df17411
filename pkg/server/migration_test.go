package server

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The not-migratable metric's reason label is one of a few values whatever
// names the session's reason carries.
func TestReasonCategory(t *testing.T) {
	for why, want := range map[string]string{
		"in a transaction":                              "transaction",
		"has an open cursor":                            "cursor",
		"has pending COM_STMT_SEND_LONG_DATA":           "long-data",
		"holds LOCK TABLES":                             "table-lock",
		"holds advisory locks (GET_LOCK)":               "advisory-lock",
		"has temporary tables (t1, t2)":                 "temporary-table",
		"migration is not configured":                   "not-configured",
		"cluster east has no migration-user configured": "not-configured",
		`user bob authenticates with "client_ed25519"; only mysql_native_password credentials can be re-used`: "credential",
		"no stored mysql_native_password hash of user x matches its login (password changed since?)":          "credential",
		"something new": "other",
	} {
		require.Equal(t, want, reasonCategory(why), why)
	}
}
