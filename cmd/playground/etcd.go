package main

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

const (
	etcdReadyTimeout = 30 * time.Second
	etcdAttempts     = 3
)

// etcdServer is one single-node embedded etcd on loopback: the PD etcd of one
// cluster.
type etcdServer struct {
	Endpoint string // http://127.0.0.1:port
	srv      *embed.Etcd
}

// startEtcd starts an etcd with its data in dir/etcd and its log in
// dir/etcd.log. Free ports are picked just before the start, so another
// process may take one in between; that fails the attempt, which is retried on
// new ports.
func startEtcd(name, dir string) (*etcdServer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var err error
	for range etcdAttempts {
		var e *etcdServer
		if e, err = tryStartEtcd(name, dir); err == nil {
			return e, nil
		}
	}
	return nil, fmt.Errorf("etcd of %s: %w (log: %s)", name, err, filepath.Join(dir, "etcd.log"))
}

func tryStartEtcd(name, dir string) (*etcdServer, error) {
	client, err := freeURL()
	if err != nil {
		return nil, err
	}
	peer, err := freeURL()
	if err != nil {
		return nil, err
	}
	cfg := embed.NewConfig()
	cfg.Name = name
	cfg.Dir = filepath.Join(dir, "etcd")
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{filepath.Join(dir, "etcd.log")}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = fmt.Sprintf("%s=%s", cfg.Name, peer.String())
	// Only loopback is ever listened on; metrics stay on the client port.
	cfg.ListenMetricsUrls = nil
	srv, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-srv.Server.ReadyNotify():
	case err := <-srv.Err():
		srv.Close()
		return nil, err
	case <-time.After(etcdReadyTimeout):
		srv.Close()
		return nil, fmt.Errorf("not ready after %s", etcdReadyTimeout)
	}
	return &etcdServer{Endpoint: client.String(), srv: srv}, nil
}

// Close stops the server; its data stays in its directory.
func (e *etcdServer) Close() { e.srv.Close() }

func freeURL() (url.URL, error) {
	addr, err := freeAddr()
	if err != nil {
		return url.URL{}, err
	}
	return url.URL{Scheme: "http", Host: addr}, nil
}

// freeAddr is a 127.0.0.1 address whose port was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}
