package testenv

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// EtcdOptions tunes NewEtcd and StartEtcd.
type EtcdOptions struct {
	// Name is the member name (--name); "" is "etcd".
	Name string
	// Advertise is the client address (host:port) etcd advertises; "" is its own. Its clients
	// switch to it when they re-sync their endpoints.
	Advertise string
	// LogLevel is etcd's --log-level; "" is "info".
	LogLevel string
}

// Etcd is an etcd server run from the etcd binary as a child process on loopback ports, with a
// data directory that outlives the process: a test can freeze it (Signal), kill it and start it
// again on the same ports and data, which the embedded etcd of test/etcdtest cannot do. The
// process is killed when the test ends.
type Etcd struct {
	ClientAddr string // host:port
	PeerAddr   string // host:port
	Name       string
	// InitialCluster (--initial-cluster, "name=http://peer,...") makes it a member of a
	// cluster; "" is a cluster of its own. Set it before Launch.
	InitialCluster string
	// Client is the test's own client: StartEtcd connects it to ClientAddr; a test that builds
	// a cluster from NewEtcd members sets it itself.
	Client  *clientv3.Client
	LogPath string // etcd's stdout and stderr, across restarts

	bin, dir, advertise, logLevel string

	mu    sync.Mutex
	child *Child // nil before the first Launch
}

// NewEtcd picks the ports and the data directory of an etcd server without starting it (Launch
// does), so that a test can first make it a member of a cluster. A missing etcd binary fails the
// test: tests that need a real etcd process stop, freeze and kill it, which nothing else stands
// in for.
func NewEtcd(t testing.TB, opts EtcdOptions) *Etcd {
	t.Helper()
	bin, err := EtcdBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	e := &Etcd{
		ClientAddr: FreeAddr(t),
		PeerAddr:   FreeAddr(t),
		Name:       cmp.Or(opts.Name, "etcd"),
		LogPath:    filepath.Join(dir, "etcd.log"),
		bin:        bin,
		dir:        dir,
		advertise:  opts.Advertise,
		logLevel:   cmp.Or(opts.LogLevel, "info"),
	}
	t.Cleanup(e.Kill)
	return e
}

// StartEtcd starts a single-member etcd server, connects Client to it and waits until a
// linearizable read succeeds. A failed test prints the tail of etcd's log.
func StartEtcd(t testing.TB, opts EtcdOptions) *Etcd {
	t.Helper()
	e := NewEtcd(t, opts)
	OnFailureShowLog(t, "etcd", e.LogPath, 0)
	// Another process of the shared machine may take a port between
	// FreeAddr and etcd's bind: then try fresh ports (a flake seen in runs).
	for attempt := 1; ; attempt++ {
		if err := e.Launch(); err != nil {
			t.Fatal(err)
		}
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{e.ClientAddr},
			DialTimeout: 2 * time.Second,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			t.Fatal(err)
		}
		e.Client = cli
		err = e.WaitReady(30 * time.Second)
		if err == nil {
			t.Cleanup(func() { _ = cli.Close() })
			return e
		}
		_ = cli.Close()
		e.Kill()
		if attempt == 5 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
		t.Logf("etcd could not bind its ports (attempt %d), trying others", attempt)
		e.ClientAddr, e.PeerAddr = FreeAddr(t), FreeAddr(t)
	}
}

// Launch starts the etcd process on the server's ports and data directory without waiting for
// it to serve. The previous process, if any, must have exited.
func (e *Etcd) Launch() error {
	args := []string{
		"--name", e.Name,
		"--data-dir", filepath.Join(e.dir, "data"),
		"--listen-client-urls", "http://" + e.ClientAddr,
		"--advertise-client-urls", "http://" + cmp.Or(e.advertise, e.ClientAddr),
		"--listen-peer-urls", "http://" + e.PeerAddr,
		"--initial-advertise-peer-urls", "http://" + e.PeerAddr,
		"--initial-cluster", cmp.Or(e.InitialCluster, e.Name+"=http://"+e.PeerAddr),
		"--logger", "zap",
		"--log-level", e.logLevel,
	}
	c, err := LaunchChild(e.LogPath, e.bin, args...)
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.child = c
	e.mu.Unlock()
	return nil
}

func (e *Etcd) current() *Child {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.child
}

// WaitReady waits up to d until a linearizable read through Client succeeds. It fails at once
// when the process exits meanwhile.
func (e *Etcd) WaitReady(d time.Duration) error {
	deadline := time.Now().Add(d)
	c := e.current()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := e.Client.Get(ctx, "/ready-check")
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-c.Exited():
			return fmt.Errorf("etcd exited during start-up:\n%s", c.LogContents())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd not ready after %v: %v\n%s", d, err, c.LogContents())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Restart starts etcd again on the same ports and data (after Kill) and waits up to d until it
// serves.
func (e *Etcd) Restart(d time.Duration) error {
	if err := e.Launch(); err != nil {
		return err
	}
	return e.WaitReady(d)
}

// Kill is SIGKILL, waiting until the process is gone. It may be called again, and before Launch.
func (e *Etcd) Kill() {
	if c := e.current(); c != nil {
		c.Kill()
	}
}

// Signal sends sig to the etcd process (SIGSTOP freezes it: it accepts TCP but answers nothing
// until SIGCONT), or returns os.ErrProcessDone when it has exited.
func (e *Etcd) Signal(sig os.Signal) error { return e.current().Signal(sig) }

// LogContents is everything etcd wrote to LogPath so far.
func (e *Etcd) LogContents() string { return readFrom(e.LogPath, 0) }
