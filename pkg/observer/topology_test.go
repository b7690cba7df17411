package observer

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStatusAddr(t *testing.T) {
	for _, tc := range []struct {
		addr string
		port uint
		want string
	}{
		{"10.0.0.1:4000", 10080, "10.0.0.1:10080"},
		{"tidb-0.tidb:4000", 10080, "tidb-0.tidb:10080"},
		{"[::1]:4000", 10080, "[::1]:10080"},
		{"10.0.0.1", 10080, "10.0.0.1:10080"}, // a bare host
		{"10.0.0.1:4000", 0, ""},              // no status port
	} {
		require.Equal(t, tc.want, StatusAddr(tc.addr, tc.port), "%s %d", tc.addr, tc.port)
	}
}
