package server

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/switchyard-db/switchyard/lib/config"
	cfgmgr "github.com/switchyard-db/switchyard/pkg/manager/config"
)

// newTestServer builds a server with one static cluster (nothing listens
// at its address: no session is opened) and no API.
func newTestServer(t *testing.T) *Server {
	text := []byte("[proxy]\naddr = \"127.0.0.1:0\"\n[api]\naddr = \"\"\n" +
		"[[cluster]]\nname = \"main\"\ninstances = [\"127.0.0.1:1\"]\n")
	cfg, err := config.Parse(text)
	require.NoError(t, err)
	lg := zaptest.NewLogger(t)
	cm := cfgmgr.New(lg, "")
	cm.Init(cfg, text)
	s, err := New(lg, cm)
	require.NoError(t, err)
	return s
}

// The background work (config watcher, fleet, drains) runs under Start's
// context: it ends when that context does, before Close.
func TestStartContextEndsBackgroundWork(t *testing.T) {
	s := newTestServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, s.Start(ctx))
	defer s.Close()
	require.NoError(t, s.bg.Err(), "the background runs while Start's context does")
	cancel()
	require.Eventually(t, func() bool { return s.bg.Err() != nil }, 10*time.Second, 10*time.Millisecond,
		"the background outlived Start's context")
}

// Close ends the background work and waits for it whatever Start's
// context does (goleak checks that nothing is left).
func TestCloseEndsBackgroundWork(t *testing.T) {
	s := newTestServer(t)
	require.NoError(t, s.Start(context.Background()))
	s.Close()
	require.Error(t, s.bg.Err())
}

// Right after a start the proxy is not ready while a cluster of its config
// has not loaded its first topology from etcd (its logins would be refused
// with ERR 1429), and it is ready once the wait for it is over, so that an
// unreachable etcd does not keep the other clusters out of a load balancer.
func TestReadyWaitsForTheFirstTopology(t *testing.T) {
	text := []byte("[proxy]\naddr = \"127.0.0.1:0\"\n[api]\naddr = \"\"\n" +
		"[[cluster]]\nname = \"static\"\ninstances = [\"127.0.0.1:1\"]\n" +
		"[[cluster]]\nname = \"disc\"\netcd-endpoints = [\"127.0.0.1:1\"]\n")
	cfg, err := config.Parse(text)
	require.NoError(t, err)
	lg := zaptest.NewLogger(t)
	cm := cfgmgr.New(lg, "")
	cm.Init(cfg, text)
	s, err := New(lg, cm)
	require.NoError(t, err)
	s.readyWait = time.Second
	require.NoError(t, s.Start(context.Background()))
	defer s.Close()

	ok, reason := s.Ready()
	require.False(t, ok)
	require.Contains(t, reason, "cluster disc has not loaded its topology")
	require.Eventually(t, func() bool { ok, _ := s.Ready(); return ok }, 10*time.Second, 10*time.Millisecond,
		"an etcd that never answers must not keep the proxy unready past the wait")
}

// A proxy whose clusters are all static is ready as soon as it has started.
func TestReadyAtOnceWithStaticClusters(t *testing.T) {
	s := newTestServer(t)
	require.NoError(t, s.Start(context.Background()))
	defer s.Close()
	ok, reason := s.Ready()
	require.True(t, ok, reason)
}
