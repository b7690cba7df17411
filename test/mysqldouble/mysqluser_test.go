package mysqldouble

import (
	"context"
	"database/sql"
	"testing"

	"github.com/stretchr/testify/require"
)

// The migration account's read of a stored native hash gets MariaDB's
// answer: PASSWORD('password') is MariaDB's documented
// *2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19; an unknown user or one without
// a password has no row.
func TestStoredNativeHash(t *testing.T) {
	s := startDefault(t, func(c *Config) {
		c.NativeUsers = map[string]string{"app": "password", "migrator": "m1g", "emptypw": ""}
	})
	db := openDB(t, driverConfig(t, s, "migrator", "m1g"))
	ctx := context.Background()
	hashes := func(user string) []string {
		rows, err := db.QueryContext(ctx, "SELECT authentication_string FROM mysql.user WHERE user = '"+user+
			"' AND plugin IN ('mysql_native_password', '')")
		require.NoError(t, err)
		defer rows.Close()
		var out []string
		for rows.Next() {
			var h sql.NullString
			require.NoError(t, rows.Scan(&h))
			out = append(out, h.String)
		}
		require.NoError(t, rows.Err())
		return out
	}
	require.Equal(t, []string{"*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"}, hashes("app"))
	require.Empty(t, hashes("nobody"))
	require.Empty(t, hashes("emptypw"))
}
