package etcdtest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func get(t *testing.T, e *Etcd, key string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := e.Client.Get(ctx, key)
	require.NoError(t, err)
	if len(resp.Kvs) == 0 {
		return "", false
	}
	return string(resp.Kvs[0].Value), true
}

func TestReserveLaunchRestart(t *testing.T) {
	e := Reserve(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_, err := e.Client.Put(ctx, "/k", "v")
	cancel()
	require.Error(t, err, "nothing listens before Launch")

	e.Launch(t)
	Register(t, e.Client, "/p", "a:1", InfoJSON("v", 1, ""), 60)
	v, ok := get(t, e, "/p/a:1/info")
	require.True(t, ok)
	require.Equal(t, InfoJSON("v", 1, "{}"), v)
	endpoint := e.Endpoint

	e.Restart(t)
	require.Equal(t, endpoint, e.Endpoint)
	_, ok = get(t, e, "/p/a:1/info")
	require.True(t, ok, "Restart keeps the data")

	e.RestartEmpty(t)
	require.Equal(t, endpoint, e.Endpoint)
	_, ok = get(t, e, "/p/a:1/info")
	require.False(t, ok, "RestartEmpty loses the data")
	_, ok = get(t, e, "/p/a:1/ttl")
	require.False(t, ok)

	e.Stop()
	e.Stop() // idempotent
	e.Launch(t)
	Register(t, e.Client, "/p", "b:1", InfoJSON("v", 1, ""), 60)
	Deregister(t, e.Client, "/p", "b:1")
	_, ok = get(t, e, "/p/b:1/ttl")
	require.False(t, ok)
	_, ok = get(t, e, "/p/b:1/info")
	require.True(t, ok)
}
