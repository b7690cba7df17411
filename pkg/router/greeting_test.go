package router

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/observer"
)

func TestRulesCandidates(t *testing.T) {
	r := NewRules(rulesConfig(func(c *config.Config) { c.Proxy.DefaultCluster = "east" }))
	at := func(port uint16, from string) ([]string, bool) {
		c := client("", from, port, "")
		return r.Candidates(c.LocalAddr, c.ClientAddr)
	}
	got, all := at(6001, "1.2.3.4:5")
	require.Equal(t, []string{"west"}, got, "a route port settles the cluster")
	require.False(t, all)
	got, _ = at(6000, "10.1.2.3:5")
	require.Equal(t, []string{"east", "west"}, got, "a user rule may match first; the CIDR rule then must")
	got, _ = at(6000, "1.2.3.4:5")
	require.Equal(t, []string{"east", "tls"}, got, "user and SNI rules may match, else the default")
	got, _ = at(6002, "1.2.3.4:5")
	require.Equal(t, []string{"east", "tls"}, got)

	prefix := NewRules(rulesConfig(func(c *config.Config) { c.Proxy.UserPrefixRouting = true; c.Proxy.DefaultCluster = "east" }))
	c := client("", "1.2.3.4:5", 6001, "")
	_, all = prefix.Candidates(c.LocalAddr, c.ClientAddr)
	require.True(t, all, "a user prefix can name any cluster")
}

func TestBalancedServerInfo(t *testing.T) {
	tv := &topoVar{}
	withServer := func(v *observer.ClusterView, in *observer.ServerInfo) *observer.ClusterView {
		for _, b := range v.Backends {
			b.Health.Server = in
		}
		return v
	}
	maria := &observer.ServerInfo{Version: "5.5.5-10.11.19-MariaDB", Capability: 0xf2, ExtCapability: 0x1d, Charset: 8}
	tidb := &observer.ServerInfo{Version: "8.0.11-TiDB-v7.5.0", Capability: 0x33, Charset: 46}
	tv.set(withServer(clusterView("east", observer.StateReady, bk{"a:1", true}), maria),
		clusterView("west", observer.StateReady, bk{"b:1", true}))
	cfg := config.NewDefault()
	cfg.Proxy.DefaultCluster = "east"
	cfg.Clusters = []config.Cluster{{Name: "east", Instances: []string{"a:1"}}, {Name: "west", Instances: []string{"b:1"}}}
	cfg.Routes = []config.Route{{Cluster: "west", Ports: []int{6001}}, {Cluster: "east", Users: []string{"e*"}}}
	r := NewBalanced(tv, cfg)
	local := func(port uint16) netip.AddrPort { return netip.MustParseAddrPort("127.0.0.1:" + itoa(port)) }
	from := netip.MustParseAddrPort("127.0.0.1:9")

	require.Equal(t, maria, r.ServerInfo(local(6000), from), "the default cluster's greeting")
	require.Nil(t, r.ServerInfo(local(6001), from), "west is not probed yet: the caller's fixed set")

	tv.set(withServer(clusterView("east", observer.StateReady, bk{"a:1", true}), maria),
		withServer(clusterView("west", observer.StateReady, bk{"b:1", true}), tidb))
	require.Equal(t, tidb, r.ServerInfo(local(6001), from), "the route port's cluster")

	cfg.Routes = []config.Route{{Cluster: "west", Users: []string{"w*"}}}
	r.Update(cfg)
	require.Equal(t, &observer.ServerInfo{Version: tidb.Version, Capability: 0x32, Charset: 46},
		r.ServerInfo(local(6000), from), "either cluster: what both share, no MariaDB word")
}

func itoa(p uint16) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), p).String()[len("0.0.0.0:"):]
}
