package etcdclient

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/switchyard-db/switchyard/lib/config"
	"go.uber.org/zap"
)

// New must not wait for the endpoint: start-up never blocks on etcd.
func TestNewDoesNotBlockOnDeadEndpoint(t *testing.T) {
	start := time.Now()
	cli, err := New(zap.NewNop(), []string{"127.0.0.1:1"}, nil)
	require.NoError(t, err)
	require.Less(t, time.Since(start), dialTimeout, "New waited for the endpoint")
	require.NoError(t, cli.Close())
}

func TestNewNeedsEndpoints(t *testing.T) {
	_, err := New(zap.NewNop(), nil, nil)
	require.Error(t, err)
}

func TestFromConfig(t *testing.T) {
	cli, err := FromConfig(zap.NewNop(), []string{"127.0.0.1:1"}, config.TLSConfig{})
	require.NoError(t, err)
	require.NoError(t, cli.Close())
	_, err = FromConfig(zap.NewNop(), []string{"127.0.0.1:1"}, config.TLSConfig{CA: "/nonexistent/ca.pem"})
	require.ErrorContains(t, err, "etcd-tls: ")
}
