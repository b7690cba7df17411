package routertest

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/pkg/router"
)

func TestNewForAddrs(t *testing.T) {
	r := NewForAddrs("c", []string{"a:1", "b:1"})
	var ids []string
	for range 2 {
		l, err := r.Route(router.ClientInfo{}, nil)
		require.NoError(t, err)
		ids = append(ids, l.ID())
	}
	require.ElementsMatch(t, []string{"c/a:1", "c/b:1"}, ids)
	_, err := r.Route(router.ClientInfo{}, []string{"c/a:1", "c/b:1"})
	require.ErrorIs(t, err, router.ErrNoBackend)
	require.Equal(t, fmt.Sprint(map[string]int64{"c/a:1": 1, "c/b:1": 1}), fmt.Sprint(r.Sessions()))
}
