package router

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/switchyard-db/switchyard/lib/config"
)

func rulesConfig(mod func(c *config.Config)) *config.Config {
	c := config.NewDefault()
	c.Clusters = []config.Cluster{
		{Name: "east", Instances: []string{"h:1"}},
		{Name: "west", Instances: []string{"h:1"}},
		{Name: "tls", Instances: []string{"h:1"}},
	}
	c.Routes = []config.Route{
		{Cluster: "west", Ports: []int{6001}},
		{Cluster: "east", Users: []string{"app_*", "svc?"}},
		{Cluster: "west", ClientCIDRs: []string{"10.1.0.0/16", "192.168.0.7"}},
		{Cluster: "tls", ServerNames: []string{"tls.db.example.com"}},
		{Cluster: "east", Ports: []int{6002}, Users: []string{"ops"}}, // both must match
	}
	if mod != nil {
		mod(c)
	}
	if err := c.Check(); err != nil {
		panic(err)
	}
	return c
}

func client(user, from string, port uint16, sni string) ClientInfo {
	return ClientInfo{
		User:       user,
		ClientAddr: netip.MustParseAddrPort(from),
		LocalAddr:  netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port),
		ServerName: sni,
	}
}

func TestRulesMatch(t *testing.T) {
	withDefault := func(c *config.Config) { c.Proxy.DefaultCluster = "east" }
	withPrefix := func(c *config.Config) { c.Proxy.UserPrefixRouting = true }
	tests := []struct {
		name        string
		mod         func(c *config.Config)
		ci          ClientInfo
		wantCluster string
		wantUser    string
		wantErr     string
	}{
		{"port", nil, client("bob", "127.0.0.1:5000", 6001, ""), "west", "bob", ""},
		{"user glob", nil, client("app_orders", "127.0.0.1:5000", 6000, ""), "east", "app_orders", ""},
		{"user glob ?", nil, client("svc1", "127.0.0.1:5000", 6000, ""), "east", "svc1", ""},
		{"user glob is anchored", nil, client("myapp_x", "127.0.0.1:5000", 6000, ""), "", "", "no route for user 'myapp_x' from 127.0.0.1 on port 6000"},
		{"first match wins", nil, client("app_x", "127.0.0.1:5000", 6001, ""), "west", "app_x", ""},
		{"client cidr", nil, client("bob", "10.1.2.3:5000", 6000, ""), "west", "bob", ""},
		{"client cidr mapped v4", nil, client("bob", "[::ffff:10.1.2.3]:5000", 6000, ""), "west", "bob", ""},
		{"client single ip", nil, client("bob", "192.168.0.7:1", 6000, ""), "west", "bob", ""},
		{"client cidr miss", nil, client("bob", "10.2.0.1:5000", 6000, ""), "", "", "no route"},
		{"sni", nil, client("bob", "127.0.0.1:5000", 6000, "TLS.db.example.com"), "tls", "bob", ""},
		{"all conditions of a rule", nil, client("ops", "127.0.0.1:5000", 6000, ""), "", "", "no route"},
		{"all conditions met", nil, client("ops", "127.0.0.1:5000", 6002, ""), "east", "ops", ""},
		{"default", withDefault, client("bob", "127.0.0.1:5000", 6000, ""), "east", "bob", ""},
		{"no default", nil, client("bob", "127.0.0.1:5000", 6000, ""), "", "", "proxy.default-cluster is not set"},
		{"user prefix", withPrefix, client("west.alice", "127.0.0.1:5000", 6000, ""), "west", "alice", ""},
		{"user prefix beats rules", withPrefix, client("east.bob", "10.1.2.3:5000", 6001, ""), "east", "bob", ""},
		{"prefix that is no cluster", func(c *config.Config) { withPrefix(c); withDefault(c) }, client("john.smith", "127.0.0.1:1", 6000, ""), "east", "john.smith", ""},
		{"prefix off", withDefault, client("west.alice", "127.0.0.1:1", 6000, ""), "east", "west.alice", ""},
		{"empty rest", func(c *config.Config) { withPrefix(c); withDefault(c) }, client("west.", "127.0.0.1:1", 6000, ""), "east", "west.", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRules(rulesConfig(tt.mod))
			cluster, user, err := r.Match(tt.ci)
			if tt.wantErr != "" {
				require.ErrorIs(t, err, ErrNoRoute)
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantCluster, cluster)
			require.Equal(t, tt.wantUser, user)
		})
	}
}

func TestRulesSingleClusterIsDefault(t *testing.T) {
	c := config.NewDefault()
	c.Clusters = []config.Cluster{{Name: "only", Instances: []string{"h:1"}}}
	cluster, _, err := NewRules(c).Match(client("x", "127.0.0.1:1", 6000, ""))
	require.NoError(t, err)
	require.Equal(t, "only", cluster)
}

func TestRulesMapUser(t *testing.T) {
	r := NewRules(rulesConfig(func(c *config.Config) { c.Proxy.UserPrefixRouting = true }))
	u, err := r.MapUser("east", "east.carol")
	require.NoError(t, err)
	require.Equal(t, "carol", u)
	u, err = r.MapUser("east", "carol")
	require.NoError(t, err)
	require.Equal(t, "carol", u)
	u, err = r.MapUser("east", "john.smith")
	require.NoError(t, err)
	require.Equal(t, "john.smith", u)
	_, err = r.MapUser("east", "west.carol")
	require.ErrorContains(t, err, "belongs to cluster west, but this session is connected to cluster east")

	off := NewRules(rulesConfig(nil))
	u, err = off.MapUser("east", "west.carol")
	require.NoError(t, err)
	require.Equal(t, "west.carol", u)
}
