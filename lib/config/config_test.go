package config

import (
	"bytes"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/stretchr/testify/require"
)

// validConfig is a Config built in code that passes Check.
func validConfig() *Config {
	c := NewDefault()
	c.Clusters = []Cluster{{Name: "east", Instances: []string{"127.0.0.1:3306"}, DrainTimeout: NewDuration(DefaultDrainTimeout)}}
	return c
}

func TestDefaults(t *testing.T) {
	c := NewDefault()
	require.Equal(t, "0.0.0.0:6000", c.Proxy.Addr)
	require.Zero(t, c.Proxy.MaxConnections)
	require.Zero(t, c.Proxy.GracefulWaitBeforeShutdown.Duration)
	require.Equal(t, 15*time.Second, c.Proxy.GracefulCloseConnTimeout.Duration)
	require.Empty(t, c.Proxy.ProxyProtocol)
	require.Empty(t, c.Proxy.ProxyProtocolTrustedCIDRs)
	require.Empty(t, c.Proxy.BackendProxyProtocol)
	require.Empty(t, c.Proxy.ServerVersion, "by default the backends' version is announced")
	require.Equal(t, 5*time.Second, c.Proxy.ConnectTimeout.Duration)
	require.Equal(t, Security{}, c.Security)
	require.Equal(t, Log{Level: "info", Format: "console"}, c.Log)
	require.Empty(t, c.Clusters)

	// Defaults are valid except for the cluster an operator must provide.
	err := c.Check()
	require.ErrorIs(t, err, ErrInvalid)
	require.EqualError(t, err, "at least one [[cluster]] is required")
	require.NoError(t, validConfig().Check())

	// Each call returns its own value: a reload must not share slices with the
	// running config.
	require.NotSame(t, NewDefault(), NewDefault())
}

func TestParseMinimalKeepsDefaults(t *testing.T) {
	c, err := Parse([]byte("[[cluster]]\nname = \"east\"\ninstances = [\"127.0.0.1:3306\"]\n"))
	require.NoError(t, err)
	require.Equal(t, validConfig(), c)
}

func fullConfig(t *testing.T) *Config {
	dir := t.TempDir()
	return &Config{
		Proxy: ProxyServer{
			Addr:                       "127.0.0.1:7000",
			MaxConnections:             100,
			GracefulWaitBeforeShutdown: NewDuration(3 * time.Second),
			GracefulCloseConnTimeout:   NewDuration(time.Minute + 500*time.Millisecond),
			ProxyProtocol:              "v2",
			ProxyProtocolTrustedCIDRs:  []string{"10.0.0.0/8", "192.168.1.7", "::1"},
			BackendProxyProtocol:       "v2",
			ServerVersion:              "5.7.25-Switchyard",
			ConnectTimeout:             NewDuration(250 * time.Millisecond),
			HandshakeTimeout:           NewDuration(7 * time.Second),
			BackendReadTimeout:         NewDuration(90 * time.Second),
			DefaultCluster:             "east",
			UserPrefixRouting:          true,
			Labels:                     map[string]string{"zone": "a"},
			AdvertiseAddr:              "10.0.0.9",
		},
		Security: Security{
			ServerTLS: TLSConfig{
				Cert:       writeFile(t, dir, "server.crt"),
				Key:        writeFile(t, dir, "server.key"),
				CA:         writeFile(t, dir, "client-ca.crt"),
				SkipVerify: true,
			},
			BackendTLS: TLSConfig{
				Cert: writeFile(t, dir, "client.crt"),
				Key:  writeFile(t, dir, "client.key"),
				CA:   writeFile(t, dir, "backend-ca.crt"),
			},
			RequireBackendTLS: true,
		},
		Log: Log{Level: "debug", Format: "json", File: filepath.Join(dir, "proxy.log")},
		API: API{Addr: "127.0.0.1:3081", Token: "secret", ReadToken: "looker", PublicEndpoints: []string{"/livez"},
			TLS:         TLSConfig{Cert: writeFile(t, dir, "api.crt"), Key: writeFile(t, dir, "api.key"), CA: writeFile(t, dir, "api-clients.crt")},
			ClientCerts: ClientCerts{Admin: []string{"ops"}, Read: []string{"grafana", "spiffe://example.org/monitor"}}},
		Coordination: Coordination{
			EtcdEndpoints:    []string{"127.0.0.1:2379"},
			Fleet:            "prod-1",
			NodeID:           "node-a",
			ElectionTTL:      NewDuration(3 * time.Second),
			NodeTTL:          NewDuration(12 * time.Second),
			EtcdTLS:          TLSConfig{CA: writeFile(t, dir, "fleet-ca.crt")},
			MaxDownPerMinute: 5,
			AllowSingleVoter: true,
		},
		HealthCheck: HealthCheck{Interval: NewDuration(2 * time.Second), RetryInterval: NewDuration(250 * time.Millisecond), Timeout: NewDuration(300 * time.Millisecond), FailuresToUnhealthy: 5, SQLUser: "switchyard_probe"},
		Balance: Balance{Policy: PolicyConnection, MetricsInterval: NewDuration(10 * time.Second),
			EnableRebalance: true, MigrationsPerSecond: 5, EvictionsPerSecond: 50, RebalanceRatio: 1.5, CPUGap: 0.3,
			BackendDrainTimeout: NewDuration(2 * time.Minute)},
		Digests: Digests{Enabled: false, MaxPerCluster: 64, SampleLength: 100},
		QueryLog: QueryLog{Mode: QueryLogSlowOrFailed, SlowThreshold: NewDuration(250 * time.Millisecond), File: filepath.Join(dir, "queries.log"),
			MaxTextLength: 200, MaxSize: 10, MaxBackups: 2, MaxAge: 7, Compress: true, Buffer: 100},
		Traffic: Traffic{CaptureDir: dir},
		Clusters: []Cluster{
			{Name: "east", Instances: []string{"10.0.0.1:4000", "[fd00::1]:4000"}, DrainTimeout: NewDuration(time.Second)},
			{Name: "west-2", Instances: []string{"db.example.com:3306"}, DrainTimeout: NewDuration(time.Minute)},
			{
				Name:           "tidb",
				EtcdEndpoints:  []string{"127.0.0.1:2379", "https://pd.example.com:2379"},
				TopologyPrefix: "/keyspaces/tidb/ks1/topology/tidb",
				EtcdTLS:        TLSConfig{CA: writeFile(t, dir, "etcd-ca.crt")},
				Prometheus:     "http://127.0.0.1:9090",
				CPUQuery:       "cpu",
				MemoryQuery:    "mem",
				Labels:         map[string]string{"zone": "b"},
				DrainTimeout:   NewDuration(DefaultDrainTimeout),
			},
		},
		Routes: []Route{
			{Cluster: "tidb", Ports: []int{7001}, Users: []string{"app_*"}, ClientCIDRs: []string{"10.0.0.0/8"}, ServerNames: []string{"tidb.example.com"}},
			{Cluster: "west-2", Users: []string{"w?"}},
		},
	}
}

// TestRoundTrip encodes every field and parses it back: the config manager may
// re-encode a Config (to compare or serve it), so encoding must lose nothing.
func TestRoundTrip(t *testing.T) {
	want := fullConfig(t)
	require.NoError(t, want.Check())

	var buf bytes.Buffer
	require.NoError(t, toml.NewEncoder(&buf).Encode(want))
	got, err := Parse(buf.Bytes())
	require.NoError(t, err, buf.String())
	require.Equal(t, want, got)
	require.Contains(t, buf.String(), `graceful-close-conn-timeout = "1m0.5s"`)
	require.Contains(t, buf.String(), "event-loops = 0\n")

	for el, text := range map[EventLoops]string{AutoEventLoops: `event-loops = "auto"`, EventLoopsN(3): "event-loops = 3\n"} {
		want.Proxy.EventLoops = el
		buf.Reset()
		require.NoError(t, toml.NewEncoder(&buf).Encode(want))
		got, err = Parse(buf.Bytes())
		require.NoError(t, err, buf.String())
		require.Equal(t, want, got)
		require.Contains(t, buf.String(), text)
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: "15s", want: 15 * time.Second},
		{in: " 1m30s ", want: 90 * time.Second},
		{in: "250ms", want: 250 * time.Millisecond},
		{in: "0", want: 0},
		{in: "-1s", want: -time.Second}, // parses; Check rejects it where it matters
		{in: "5", wantErr: `invalid duration "5": want a number with a unit, such as "15s" or "1m30s"`},
		{in: "", wantErr: `invalid duration ""`},
		{in: "15 s", wantErr: `invalid duration "15 s"`},
		{in: "fast", wantErr: `invalid duration "fast"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var d Duration
			err := d.UnmarshalText([]byte(tt.in))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, d.Duration)
			text, err := d.MarshalText()
			require.NoError(t, err)
			var back Duration
			require.NoError(t, back.UnmarshalText(text))
			require.Equal(t, d, back)
		})
	}
}

func TestDurationInTOML(t *testing.T) {
	tests := []struct {
		value   string
		wantErr string
	}{
		{value: `"2s"`},
		{value: `"soon"`, wantErr: `line 2: proxy.connect-timeout: invalid duration "soon": want a number with a unit, such as "15s" or "1m30s"`},
		{value: `"5"`, wantErr: `line 2: proxy.connect-timeout: invalid duration "5"`},
		// A bare number would otherwise be read as nanoseconds.
		{value: `5`, wantErr: `line 2: proxy.connect-timeout: must be a duration string such as "15s", not an integer`},
		{value: `1.5`, wantErr: `line 2: proxy.connect-timeout: must be a duration string such as "15s", not a float`},
		{value: `true`, wantErr: `line 2: proxy.connect-timeout: must be a duration string such as "15s", not a boolean`},
		{value: `["1s"]`, wantErr: `line 2: proxy.connect-timeout: must be a duration string such as "15s", not an array`},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			doc := "[proxy]\nconnect-timeout = " + tt.value + "\n" + minimalCluster
			c, err := Parse([]byte(doc))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.ErrorIs(t, err, ErrInvalid)
				return
			}
			require.NoError(t, err)
			require.Equal(t, 2*time.Second, c.Proxy.ConnectTimeout.Duration)
		})
	}
}

func TestTrustedNets(t *testing.T) {
	p := ProxyServer{ProxyProtocolTrustedCIDRs: []string{"10.1.2.3/8", "192.168.1.7", "fd00::/8", "::1"}}
	nets, err := p.TrustedNets()
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("192.168.1.7/32"),
		netip.MustParsePrefix("fd00::/8"),
		netip.MustParsePrefix("::1/128"),
	}, nets)

	for _, bad := range []string{"", "10.0.0.0/33", "example.com", "fe80::1%eth0", "10.0.0.1/"} {
		p := ProxyServer{ProxyProtocolTrustedCIDRs: []string{"10.0.0.0/8", bad}}
		_, err := p.TrustedNets()
		require.ErrorContains(t, err, `proxy.proxy-protocol-trusted-cidrs[1] "`+bad+`"`, bad)
	}

	nets, err = ProxyServer{}.TrustedNets()
	require.NoError(t, err)
	require.Empty(t, nets)
}

func TestTLSConfigEnabled(t *testing.T) {
	tests := []struct {
		tls     TLSConfig
		enabled bool
		hasCert bool
	}{
		{tls: TLSConfig{}},
		{tls: TLSConfig{Cert: "c", Key: "k"}, enabled: true, hasCert: true},
		{tls: TLSConfig{Cert: "c"}, enabled: true},
		{tls: TLSConfig{CA: "ca"}, enabled: true},
		{tls: TLSConfig{SkipVerify: true}, enabled: true},
		{tls: TLSConfig{Key: "k"}},
	}
	for _, tt := range tests {
		require.Equal(t, tt.enabled, tt.tls.Enabled(), "%+v", tt.tls)
		require.Equal(t, tt.hasCert, tt.tls.HasCert(), "%+v", tt.tls)
	}
}

func TestClusterLookup(t *testing.T) {
	c := fullConfig(t)
	require.Equal(t, "west-2", c.Cluster("west-2").Name)
	require.Nil(t, c.Cluster("north"))
}
