package testenv

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestEtcdFreezeKillRestart(t *testing.T) {
	e := StartEtcd(t, EtcdOptions{Name: "unit", LogLevel: "warn"})
	require.Equal(t, "unit", e.Name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := e.Client.Put(ctx, "/k", "v")
	require.NoError(t, err)

	// Frozen, it answers nothing.
	require.NoError(t, e.Signal(syscall.SIGSTOP))
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = e.Client.Get(short, "/k")
	cancelShort()
	require.Error(t, err, "a frozen etcd answers")
	require.NoError(t, e.Signal(syscall.SIGCONT))

	// Killed and restarted on the same ports, it keeps its data.
	e.Kill()
	require.ErrorIs(t, e.Signal(syscall.SIGCONT), os.ErrProcessDone)
	require.NoError(t, e.Restart(30*time.Second))
	resp, err := e.Client.Get(ctx, "/k")
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	require.Equal(t, "v", string(resp.Kvs[0].Value))
	require.FileExists(t, e.LogPath)
	e.Kill()
	e.Kill() // again: a no-op
}

func TestNewEtcdDoesNotStart(t *testing.T) {
	e := NewEtcd(t, EtcdOptions{})
	require.Equal(t, "etcd", e.Name)
	require.NotEqual(t, e.ClientAddr, e.PeerAddr)
	e.Kill() // before Launch: a no-op
}
