package etcdclient

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/switchyard-db/switchyard/lib/config"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

const (
	dialTimeout       = 5 * time.Second
	keepAliveTime     = 10 * time.Second
	keepAliveTimeout  = 3 * time.Second
	autoSyncInterval  = 30 * time.Second
	maxCallSendMsgLen = 8 << 20

	// gRPC's default reconnect backoff grows to 120 s, so after a long etcd
	// outage a cluster would stay stale for up to two minutes after etcd
	// came back. Reconnect at most every 3 s instead.
	reconnectBase       = time.Second
	reconnectMax        = 3 * time.Second
	reconnectMultiplier = 1.2
	minConnectTimeout   = 3 * time.Second
)

// New returns a client for endpoints. It does no I/O: connections are made
// in the background and calls fail (or wait, up to their context) until one
// succeeds. tlsCfg may be nil for plain connections.
func New(lg *zap.Logger, endpoints []string, tlsCfg *tls.Config) (*clientv3.Client, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints")
	}
	return clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		TLS:                  tlsCfg,
		DialTimeout:          dialTimeout,
		DialKeepAliveTime:    keepAliveTime,
		DialKeepAliveTimeout: keepAliveTimeout,
		AutoSyncInterval:     autoSyncInterval,
		MaxCallSendMsgSize:   maxCallSendMsgLen,
		Logger:               lg.Named("etcd-client").WithOptions(zap.IncreaseLevel(zap.WarnLevel)),
		// Without PermitWithoutStream the client stops pinging an idle
		// connection and a silently dead endpoint goes unnoticed.
		PermitWithoutStream: true,
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  reconnectBase,
				Multiplier: reconnectMultiplier,
				Jitter:     0.2,
				MaxDelay:   reconnectMax,
			},
			MinConnectTimeout: minConnectTimeout,
		})},
	})
}

// FromConfig is New with the TLS settings of a config section (etcd-tls):
// plain connections when none is set.
func FromConfig(lg *zap.Logger, endpoints []string, t config.TLSConfig) (*clientv3.Client, error) {
	var tlsCfg *tls.Config
	if t.Enabled() {
		var err error
		if tlsCfg, err = t.ClientTLS(); err != nil {
			return nil, fmt.Errorf("etcd-tls: %w", err)
		}
	}
	return New(lg, endpoints, tlsCfg)
}
