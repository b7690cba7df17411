package router

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestStaticFewestSessions(t *testing.T) {
	r := NewStatic("main", []string{"a:1", "b:1"})
	l1, err := r.Route(ClientInfo{}, nil)
	require.NoError(t, err)
	l2, err := r.Route(ClientInfo{}, nil)
	require.NoError(t, err)
	require.NotEqual(t, l1.Addr(), l2.Addr(), "second session goes to the idle backend")
	require.Equal(t, "main", l1.Cluster())
	require.Equal(t, "main/"+l1.Addr(), l1.ID())

	l1.Release()
	l1.Release() // idempotent
	l3, err := r.Route(ClientInfo{}, nil)
	require.NoError(t, err)
	require.Equal(t, l1.Addr(), l3.Addr(), "released backend is the least loaded again")
	require.Equal(t, map[string]int64{"a:1": 1, "b:1": 1}, r.Sessions())
}

func TestStaticSkipsFailedBackend(t *testing.T) {
	now := time.Unix(1000, 0)
	r := NewStatic("main", []string{"a:1", "b:1"})
	r.now = func() time.Time { return now }

	l, err := r.Route(ClientInfo{}, nil)
	require.NoError(t, err)
	failed := l.Addr()
	l.Failed(errors.New("connection refused"))

	// Even with more sessions on the healthy one, the failed one is skipped.
	for i := 0; i < 3; i++ {
		l, err := r.Route(ClientInfo{}, nil)
		require.NoError(t, err)
		require.NotEqual(t, failed, l.Addr())
	}
	// After the down period it is eligible again (and least loaded).
	now = now.Add(downFor + time.Millisecond)
	l, err = r.Route(ClientInfo{}, nil)
	require.NoError(t, err)
	require.Equal(t, failed, l.Addr())
}

func TestStaticExcludeAndAllDown(t *testing.T) {
	r := NewStatic("main", []string{"a:1"})
	_, err := r.Route(ClientInfo{}, []string{"main/a:1"})
	require.ErrorIs(t, err, ErrNoBackend)

	l, err := r.Route(ClientInfo{}, nil)
	require.NoError(t, err)
	l.Failed(errors.New("refused"))
	// A down backend is still returned when it is the only one left: trying
	// beats refusing the client outright.
	l, err = r.Route(ClientInfo{}, nil)
	require.NoError(t, err)
	require.Equal(t, "a:1", l.Addr())
}
