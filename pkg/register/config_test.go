package register

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

func zapNop() *zap.Logger { return zap.NewNop() }

func TestConfigDefaults(t *testing.T) {
	labels := map[string]string{"zone": "a"}
	r, err := New(zapNop(), Config{
		EtcdEndpoints: []string{" 127.0.0.1:2379 ", ""},
		Addr:          "10.0.0.1:3306",
		StatusAddr:    ":10080",
		TTL:           2500 * time.Millisecond,
		Labels:        labels,
	})
	require.NoError(t, err)
	require.Equal(t, []string{"127.0.0.1:2379"}, r.cfg.EtcdEndpoints)
	require.Equal(t, DefaultPrefix, r.cfg.Prefix)
	require.Equal(t, 3*time.Second, r.cfg.TTL, "rounded up to whole seconds")
	require.Equal(t, UnknownVersion, r.Version())
	require.Equal(t, DefaultPrefix+"/10.0.0.1:3306/info", r.cfg.infoKey())
	require.Equal(t, DefaultPrefix+"/10.0.0.1:3306/ttl", r.cfg.ttlKey())
	labels["zone"] = "b"
	require.Equal(t, "a", r.cfg.Labels["zone"], "the config is copied")
	require.Nil(t, r.StatusAddr(), "not listening before Run")

	r, err = New(zapNop(), Config{EtcdEndpoints: []string{"e"}, Addr: "[::1]:3306", StatusAddr: "127.0.0.1:0", Version: "v1"})
	require.NoError(t, err)
	require.Equal(t, DefaultTTL, r.cfg.TTL)
	require.Equal(t, "v1", r.Version())
}

func TestConfigErrors(t *testing.T) {
	good := Config{EtcdEndpoints: []string{"127.0.0.1:2379"}, Addr: "127.0.0.1:3306", StatusAddr: "127.0.0.1:10080"}
	tests := []struct {
		name   string
		modify func(*Config)
		want   string
	}{
		{"no endpoints", func(c *Config) { c.EtcdEndpoints = []string{" "} }, "no etcd endpoints"},
		{"relative prefix", func(c *Config) { c.Prefix = "topology/tidb" }, "must start with /"},
		{"addr without port", func(c *Config) { c.Addr = "127.0.0.1" }, "addr"},
		{"addr without host", func(c *Config) { c.Addr = ":3306" }, "no host"},
		{"addr port 0", func(c *Config) { c.Addr = "h:0" }, "bad port"},
		{"addr bad port", func(c *Config) { c.Addr = "h:x" }, "bad port"},
		{"status addr", func(c *Config) { c.StatusAddr = "10080" }, "status addr"},
		{"negative pid", func(c *Config) { c.Pid = -1 }, "negative"},
		{"pid and pid file", func(c *Config) { c.Pid, c.PidFile = 1, "/run/mysqld.pid" }, "mutually exclusive"},
		{"negative ttl", func(c *Config) { c.TTL = -time.Second }, "ttl"},
		{"empty label", func(c *Config) { c.Labels = map[string]string{"": "x"} }, "label"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.modify(&cfg)
			_, err := New(zapNop(), cfg)
			require.ErrorIs(t, err, ErrConfig)
			require.ErrorContains(t, err, tt.want)
		})
	}
	_, err := New(zapNop(), good)
	require.NoError(t, err)
}

func TestBackoffStaysInBounds(t *testing.T) {
	b := backoff{min: 100 * time.Millisecond, max: time.Second}
	for i := range 20 {
		d := b.next()
		require.LessOrEqual(t, d, time.Second, i)
		require.GreaterOrEqual(t, d, 50*time.Millisecond, i)
	}
	require.Equal(t, time.Second, b.cur)
	b.reset()
	require.LessOrEqual(t, b.next(), 100*time.Millisecond)
}
