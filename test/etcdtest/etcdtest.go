// Package etcdtest runs a real single-node etcd (go.etcd.io/etcd/server/v3
// embedded) on loopback for tests, and writes TiDB-style registrations into
// it.
package etcdtest

import (
	"context"
	"errors"
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

	"github.com/switchyard-db/switchyard/test/testenv"
)

// Etcd is one embedded etcd server with a client for the test's own writes.
type Etcd struct {
	// Endpoint is the client URL, http://127.0.0.1:port.
	Endpoint string
	// Client is connected to the server; it survives Stop, Restart and
	// RestartEmpty.
	Client *clientv3.Client

	cfg *embed.Config
	mu  sync.Mutex
	srv *embed.Etcd // nil while reserved or stopped
}

// Start starts a server; it is stopped when the test ends. Ports are picked
// free and then bound by etcd, so another process can take one in between:
// Start tries new ports a few times before it fails the test.
func Start(t testing.TB) *Etcd {
	t.Helper()
	var err error
	for range startAttempts {
		e := Reserve(t)
		if err = e.launch(); err == nil {
			return e
		}
	}
	t.Fatalf("etcdtest: start embedded etcd: %v", err)
	return nil
}

const startAttempts = 5

// Reserve picks the loopback ports and the data directory of a server
// without starting it, so that a test can point clients at an etcd that
// comes up later, with Launch. Client is usable at once: it connects when
// the server is up. The client is closed, and the server stopped, when the
// test ends.
func Reserve(t testing.TB) *Etcd {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = t.TempDir()
	cfg.LogLevel = "error"
	// Shutting down logs errors about closed listeners that mean nothing here.
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	client, peer := freeURL(t), freeURL(t)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = fmt.Sprintf("%s=%s", cfg.Name, peer.String())
	e := &Etcd{Endpoint: client.String(), cfg: cfg}
	// clientv3.New does not dial: the server need not be up yet.
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{e.Endpoint},
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
	})
	require.NoError(t, err)
	e.Client = cli
	t.Cleanup(func() {
		_ = cli.Close()
		e.Stop()
	})
	return e
}

// Launch starts a reserved or stopped server on its ports and data
// directory and waits until it is ready. The server must not be running.
func (e *Etcd) Launch(t testing.TB) {
	t.Helper()
	e.mu.Lock()
	running := e.srv != nil
	e.mu.Unlock()
	if running {
		t.Fatal("etcdtest: Launch on a running server")
	}
	require.NoError(t, e.launch())
}

func (e *Etcd) launch() error {
	// The ports were reserved or just released; another process could take
	// them, which would fail this call rather than hang it.
	var err error
	for i := 0; i < 50; i++ {
		if err = probeFree(e.cfg.ListenClientUrls[0].Host); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	srv, err := embed.StartEtcd(e.cfg)
	if err != nil {
		return err
	}
	select {
	case <-srv.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		srv.Close()
		return errors.New("embedded etcd did not become ready")
	}
	e.mu.Lock()
	e.srv = srv
	e.mu.Unlock()
	return nil
}

// Addr is the endpoint as host:port.
func (e *Etcd) Addr() string {
	u, _ := url.Parse(e.Endpoint)
	return u.Host
}

// Stop stops the server, keeping its data. It is idempotent.
func (e *Etcd) Stop() {
	e.mu.Lock()
	srv := e.srv
	e.srv = nil
	e.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// Restart starts a stopped server again on the same ports and data.
func (e *Etcd) Restart(t testing.TB) {
	t.Helper()
	e.Stop()
	e.Launch(t)
}

// RestartEmpty stops the server and starts it again on the same ports with
// a fresh data directory (from t.TempDir), as if it had lost its data: a
// new cluster that holds no keys or leases.
func (e *Etcd) RestartEmpty(t testing.TB) {
	t.Helper()
	e.Stop()
	e.cfg.Dir = t.TempDir()
	e.Launch(t)
}

func probeFree(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return l.Close()
}

func freeURL(t testing.TB) url.URL {
	t.Helper()
	return url.URL{Scheme: "http", Host: testenv.FreeAddr(t)}
}

// InfoJSON is a TiDB topology info value.
func InfoJSON(version string, statusPort uint, labels string) string {
	if labels == "" {
		labels = "{}"
	}
	return fmt.Sprintf(`{"version":%q,"git_hash":"abc","ip":"127.0.0.1","status_port":%d,`+
		`"deploy_path":"/tidb","start_timestamp":1700000000,"labels":%s}`, version, statusPort, labels)
}

// Register writes <prefix>/<addr>/info without a lease and
// <prefix>/<addr>/ttl under a fresh lease of ttl seconds, and keeps the
// lease alive until the test ends or the lease is revoked, like TiDB. It
// returns the lease. (Without the keep-alive, a test that outlived ttl on a
// loaded machine lost its backends: TestStatusPage took 158 s once.)
func Register(t testing.TB, cli *clientv3.Client, prefix, addr, info string, ttl int64) clientv3.LeaseID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := cli.Put(ctx, prefix+"/"+addr+"/info", info)
	require.NoError(t, err)
	lease, err := cli.Grant(ctx, ttl)
	require.NoError(t, err)
	_, err = cli.Put(ctx, prefix+"/"+addr+"/ttl", fmt.Sprint(time.Now().UnixNano()), clientv3.WithLease(lease.ID))
	require.NoError(t, err)
	kctx, kcancel := context.WithCancel(context.Background())
	t.Cleanup(kcancel)
	acks, err := cli.KeepAlive(kctx, lease.ID)
	require.NoError(t, err)
	go func() {
		for range acks { // closed when kctx ends or the lease is gone
		}
	}()
	return lease.ID
}

// Deregister deletes <prefix>/<addr>/ttl, which is what a lease expiry does.
func Deregister(t testing.TB, cli *clientv3.Client, prefix, addr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := cli.Delete(ctx, prefix+"/"+addr+"/ttl")
	require.NoError(t, err)
}
