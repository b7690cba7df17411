package main

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/lib/config"
)

func TestParseFlags(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	require.NoError(t, err)
	require.Equal(t, &options{dir: ".playground", port: 6000}, o)

	o, err = parseFlags([]string{"--dir", "x", "--port", "7000", "--proxy-bin", "/bin/p"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, &options{dir: "x", port: 7000, proxyBin: "/bin/p"}, o)

	for _, args := range [][]string{
		{"--port", "0"},
		{"--port", "65535"}, // PORT+1 would not exist
		{"--proxy-bin", "p", "--no-build"},
		{"extra"},
		{"--nope"},
	} {
		_, err := parseFlags(args, io.Discard)
		require.Error(t, err, "%v", args)
	}
}

// The generated config is what the proxy's own parser accepts, and says what
// the printed commands rely on.
func TestProxyConfig(t *testing.T) {
	tokens, err := newAPITokens()
	require.NoError(t, err)
	c := proxyConfig{
		addr: "127.0.0.1:6000", westPort: 6001, apiAddr: "127.0.0.1:3999", defaultCl: "east", tokens: tokens,
		clusters: []*cluster{
			{name: "east", etcd: &etcdServer{Endpoint: "http://127.0.0.1:2379"}},
			{name: "west", etcd: &etcdServer{Endpoint: "http://127.0.0.1:2381"}},
		},
	}
	path := filepath.Join(t.TempDir(), "proxy.toml")
	require.NoError(t, writeProxyConfig(path, c))
	cfg, err := config.Load(path)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:6000", cfg.Proxy.Addr)
	require.Equal(t, "127.0.0.1:3999", cfg.API.Addr, "the API must not listen on every interface")
	require.Equal(t, tokens.admin, cfg.API.Token)
	require.Equal(t, tokens.read, cfg.API.ReadToken)
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "the config holds the tokens")
	require.Equal(t, "east", cfg.Proxy.DefaultCluster)
	require.True(t, cfg.Proxy.UserPrefixRouting)
	require.Equal(t, config.NewDuration(defaultHealthInterval), cfg.HealthCheck.Interval)
	require.Len(t, cfg.Clusters, 2)
	require.Equal(t, []string{"http://127.0.0.1:2381"}, cfg.Cluster("west").EtcdEndpoints)
	require.Equal(t, []config.Route{{Cluster: "west", Ports: []int{6001}}}, cfg.Routes)
}

// Every run gets its own random pair of tokens.
func TestAPITokens(t *testing.T) {
	a, err := newAPITokens()
	require.NoError(t, err)
	b, err := newAPITokens()
	require.NoError(t, err)
	require.NotEqual(t, a.admin, a.read)
	require.NotEqual(t, a, b)
	require.Len(t, a.admin, len("admin-")+32)
	require.Len(t, a.read, len("read-")+32)
}

func TestPrepareDir(t *testing.T) {
	root := t.TempDir()
	prepare := func(dir string) (*playground, error) {
		p := newPlayground(&options{dir: dir}, io.Discard, nil)
		err := p.prepareDir()
		if p.lock != nil {
			t.Cleanup(func() { _ = p.lock.Close() })
		}
		return p, err
	}

	// A missing directory is created; an old run's files are wiped.
	dir := filepath.Join(root, "pg")
	p, err := prepare(dir)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "east", "etcd"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "proxy.log"), []byte("x"), 0o644))

	// Not while that run holds the lock.
	_, err = prepare(dir)
	require.ErrorContains(t, err, "another playground is running")
	require.FileExists(t, filepath.Join(dir, "proxy.log"))

	require.NoError(t, p.lock.Close())
	_, err = prepare(dir)
	require.NoError(t, err)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	require.Equal(t, lockName, entries[0].Name())

	// A directory the playground did not make is never wiped.
	foreign := filepath.Join(root, "home")
	require.NoError(t, os.MkdirAll(foreign, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(foreign, "notes.txt"), []byte("keep"), 0o644))
	_, err = prepare(foreign)
	require.ErrorContains(t, err, "refusing to wipe")
	require.FileExists(t, filepath.Join(foreign, "notes.txt"))
}

func TestCheckFree(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.ErrorContains(t, checkFree(l.Addr().String()), "is not free")
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	require.NoError(t, checkFree(addr))
}
