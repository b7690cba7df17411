package fleet

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/lib/config"
)

// A node advertises addresses it listens on (issue 14: a proxy on
// 127.0.0.1 advertised an interface address it did not listen on).
func TestNodeInfoAdvertisesListenAddresses(t *testing.T) {
	nonLoopback := firstNonLoopback()
	for _, tc := range []struct {
		name, proxyAddr, apiAddr, advertise string
		sql, api                            string
	}{
		{name: "loopback", proxyAddr: "127.0.0.1:6000", apiAddr: "127.0.0.1:3080",
			sql: "127.0.0.1:6000", api: "127.0.0.1:3080"},
		{name: "specific sql, wildcard api", proxyAddr: "127.0.0.1:6000", apiAddr: "0.0.0.0:3080",
			sql: "127.0.0.1:6000", api: "127.0.0.1:3080"},
		{name: "wildcard sql, loopback api", proxyAddr: "0.0.0.0:6000", apiAddr: "127.0.0.1:3080",
			sql: nonLoopback + ":6000", api: "127.0.0.1:3080"},
		{name: "wildcards", proxyAddr: ":6000", apiAddr: "[::]:3080",
			sql: nonLoopback + ":6000", api: nonLoopback + ":3080"},
		{name: "advertise wins", proxyAddr: "127.0.0.1:6000", apiAddr: "127.0.0.1:3080", advertise: "db.example",
			sql: "db.example:6000", api: "db.example:3080"},
		{name: "ipv6 loopback", proxyAddr: "[::1]:6000", apiAddr: "[::1]:3080",
			sql: "[::1]:6000", api: "[::1]:3080"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.NewDefault()
			cfg.Proxy.Addr, cfg.API.Addr, cfg.Proxy.AdvertiseAddr = tc.proxyAddr, tc.apiAddr, tc.advertise
			info, err := NodeInfo(cfg, "test")
			require.NoError(t, err)
			require.Equal(t, tc.sql, info.SQLAddr())
			require.Equal(t, tc.api, info.APIAddr())
			require.Equal(t, tc.sql, info.ID, "the default node id is the SQL address")
			require.NoError(t, info.Validate())
		})
	}
}
