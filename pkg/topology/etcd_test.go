package topology

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// testEtcd is a single-node embedded etcd on loopback with its own client.
type testEtcd struct {
	srv       *embed.Etcd
	cli       *clientv3.Client
	closeOnce sync.Once
}

func freeURL(t *testing.T) url.URL {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return url.URL{Scheme: "http", Host: addr}
}

func startEtcd(t *testing.T) *testEtcd {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = t.TempDir()
	cfg.LogLevel = "error"
	client, peer := freeURL(t), freeURL(t)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = fmt.Sprintf("%s=%s", cfg.Name, peer.String())
	srv, err := embed.StartEtcd(cfg)
	require.NoError(t, err)
	select {
	case <-srv.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		srv.Close()
		t.Fatal("embedded etcd did not become ready")
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{client.String()},
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
	})
	require.NoError(t, err)
	te := &testEtcd{srv: srv, cli: cli}
	t.Cleanup(func() {
		require.NoError(t, cli.Close())
		te.stop()
	})
	return te
}

func (te *testEtcd) stop() { te.closeOnce.Do(te.srv.Close) }

func infoJSON(version string, statusPort uint, labels string) string {
	return fmt.Sprintf(`{"version":%q,"git_hash":"abc","ip":"127.0.0.1","status_port":%d,`+
		`"deploy_path":"/tidb","start_timestamp":1700000000,"labels":%s}`, version, statusPort, labels)
}

// register writes info without a lease and ttl under a fresh lease, like TiDB.
func register(t *testing.T, cli *clientv3.Client, addr, info string) clientv3.LeaseID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := cli.Put(ctx, DefaultPrefix+"/"+addr+"/info", info)
	require.NoError(t, err)
	lease, err := cli.Grant(ctx, 45)
	require.NoError(t, err)
	_, err = cli.Put(ctx, DefaultPrefix+"/"+addr+"/ttl", fmt.Sprint(time.Now().UnixNano()), clientv3.WithLease(lease.ID))
	require.NoError(t, err)
	return lease.ID
}
