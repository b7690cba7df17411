package mysql

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/test/mysqldouble"
)

// The login probe completes the handshake (native and caching_sha2 users
// with no password) and a refused login is a failure that says why.
func TestCheckSQLLogin(t *testing.T) {
	d := mysqldouble.Start(t, mysqldouble.Config{
		NativeUsers: map[string]string{"probe": "", "secret": "pw"},
		Users:       map[string]string{"sha2probe": ""},
	})
	dialer := &net.Dialer{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	require.NoError(t, CheckSQLLogin(ctx, dialer, d.Addr(), "probe"))
	require.NoError(t, CheckSQLLogin(ctx, dialer, d.Addr(), "sha2probe"))
	before := d.Stats()
	require.Equal(t, int64(0), before.ProtocolErrors, "the probe speaks the protocol properly")

	err := CheckSQLLogin(ctx, dialer, d.Addr(), "nobody")
	require.ErrorContains(t, err, `login as "nobody" refused`)
	require.ErrorContains(t, err, "1045")
	err = CheckSQLLogin(ctx, dialer, d.Addr(), "secret")
	require.ErrorContains(t, err, `login as "secret" refused`, "a user with a password cannot log in without it")
	require.Equal(t, int64(0), d.Stats().ProtocolErrors)
}
