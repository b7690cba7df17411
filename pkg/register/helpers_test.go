package register

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/test/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zaptest"
)

// get returns the key's value and lease; found is false when it is absent.
func get(t *testing.T, te *etcdtest.Etcd, key string) (value string, lease clientv3.LeaseID, found bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := te.Client.Get(ctx, key)
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
		pio := mysql.NewPacketIO(conn)
		_ = pio.WritePacket(mysql.AppendInitialHandshake(nil, &mysql.InitialHandshake{
			ServerVersion: b.version,
			ConnID:        1,
			Salt:          []byte("0123456789abcdefghij"),
			Capability:    mysql.ClientProtocol41 | mysql.ClientSecureConnection | mysql.ClientPluginAuth,
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
