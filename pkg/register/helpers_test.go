package register

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	pnet "github.com/switchyard-db/switchyard/pkg/proxy/net"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// testEtcd is a single-node embedded etcd on loopback with its own client.
type testEtcd struct {
	client, peer url.URL
	srv          *embed.Etcd
	cli          *clientv3.Client
	closeOnce    sync.Once
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
	return startEtcdAt(t, freeURL(t), freeURL(t), t.TempDir())
}

// startEtcdAt starts etcd on given URLs, so that a test can point a client
// at an etcd that does not exist yet, or restart one on the same address.
func startEtcdAt(t *testing.T, client, peer url.URL, dir string) *testEtcd {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.LogLevel = "error"
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
	te := &testEtcd{client: client, peer: peer, srv: srv, cli: cli}
	t.Cleanup(te.stop)
	return te
}

func (te *testEtcd) stop() {
	te.closeOnce.Do(func() {
		_ = te.cli.Close()
		te.srv.Close()
	})
}

func (te *testEtcd) endpoint() string { return te.client.String() }

// get returns the key's value and lease; found is false when it is absent.
func (te *testEtcd) get(t *testing.T, key string) (value string, lease clientv3.LeaseID, found bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := te.cli.Get(ctx, key)
	require.NoError(t, err)
	if len(resp.Kvs) == 0 {
		return "", 0, false
	}
	return string(resp.Kvs[0].Value), clientv3.LeaseID(resp.Kvs[0].Lease), true
}

// fakeBackend answers every connection with a MySQL v10 greeting and hangs
// up, which is all the sidecar ever reads from a backend.
type fakeBackend struct {
	ln      net.Listener
	version string
	wg      sync.WaitGroup
	once    sync.Once
}

func startBackend(t *testing.T, version string) *fakeBackend {
	t.Helper()
	return startBackendAt(t, "127.0.0.1:0", version)
}

func startBackendAt(t *testing.T, addr, version string) *fakeBackend {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	b := &fakeBackend{ln: ln, version: version}
	b.wg.Go(b.serve)
	t.Cleanup(b.stop)
	return b
}

func (b *fakeBackend) addr() string { return b.ln.Addr().String() }

func (b *fakeBackend) serve() {
	for {
		conn, err := b.ln.Accept()
		if err != nil {
			return
		}
		pio := pnet.NewPacketIO(conn)
		_ = pio.WritePacket(pnet.AppendInitialHandshake(nil, &pnet.InitialHandshake{
			ServerVersion: b.version,
			ConnID:        1,
			Salt:          []byte("0123456789abcdefghij"),
			Capability:    pnet.ClientProtocol41 | pnet.ClientSecureConnection | pnet.ClientPluginAuth,
			Charset:       45,
			Status:        2,
			AuthPlugin:    "mysql_native_password",
		}))
		_ = pio.Flush()
		_ = conn.Close()
	}
}

// stop closes the listener: from then on connections are refused.
func (b *fakeBackend) stop() {
	b.once.Do(func() {
		_ = b.ln.Close()
		b.wg.Wait()
	})
}

var testTimings = timings{
	request:        3 * time.Second,
	cleanup:        3 * time.Second,
	probe:          time.Second,
	backoffMin:     50 * time.Millisecond,
	backoffMax:     500 * time.Millisecond,
	versionRetry:   100 * time.Millisecond,
	versionRefresh: 200 * time.Millisecond,
	httpShutdown:   2 * time.Second,
}

// runningRegistrar is a Registrar whose Run goroutine the test owns.
type runningRegistrar struct {
	*Registrar
	stop func() error // cancels Run and returns its result; idempotent
}

func startRegistrar(t *testing.T, cfg Config) *runningRegistrar {
	t.Helper()
	if cfg.StatusAddr == "" {
		cfg.StatusAddr = "127.0.0.1:0"
	}
	if cfg.TTL == 0 {
		cfg.TTL = 5 * time.Second
	}
	r, err := New(zaptest.NewLogger(t), cfg)
	require.NoError(t, err)
	r.t = testTimings
	ctx, cancel := context.WithCancel(context.Background())
	var runErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		runErr = r.Run(ctx)
	}()
	stop := sync.OnceValue(func() error {
		cancel()
		select {
		case <-done:
			return runErr
		case <-time.After(30 * time.Second):
			t.Error("Run did not return after its context was cancelled")
			return nil
		}
	})
	t.Cleanup(func() { require.NoError(t, stop()) })
	select {
	case <-r.Ready():
	case <-done:
		t.Fatalf("Run returned before it was ready: %v", runErr)
	case <-time.After(10 * time.Second):
		t.Fatal("the status listener did not come up")
	}
	return &runningRegistrar{Registrar: r, stop: stop}
}
