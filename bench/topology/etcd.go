package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// etcdServer is one single-node etcd on loopback, either embedded in this
// process or a separate etcd process (so that its CPU is not counted as ours).
type etcdServer struct {
	Endpoint string
	// Pid is the etcd process, 0 when embedded.
	Pid     int
	Version string

	dir   string
	embed *embed.Etcd
	cmd   *exec.Cmd
	exit  chan error // receives the process's exit status once
}

// freeLoopbackURL picks a free port. Another process could take it before
// etcd binds; etcd would then fail to start, loudly.
func freeLoopbackURL() (url.URL, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return url.URL{}, err
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return url.URL{}, err
	}
	return url.URL{Scheme: "http", Host: addr}, nil
}

// startEmbeddedEtcd runs etcd inside this process.
func startEmbeddedEtcd() (*etcdServer, error) {
	dir, err := os.MkdirTemp("", "switchyard-topobench-etcd-")
	if err != nil {
		return nil, err
	}
	s := &etcdServer{dir: dir, Version: "embedded go.etcd.io/etcd/server/v3"}
	client, err1 := freeLoopbackURL()
	peer, err2 := freeLoopbackURL()
	if err := errors.Join(err1, err2); err != nil {
		s.Stop()
		return nil, err
	}
	cfg := embed.NewConfig()
	cfg.Dir = filepath.Join(dir, "data")
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = fmt.Sprintf("%s=%s", cfg.Name, peer.String())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("embedded etcd: %w", err)
	}
	s.embed = e
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		s.Stop()
		return nil, errors.New("embedded etcd not ready after 30s")
	}
	s.Endpoint = client.String()
	return s, nil
}

// startEtcdProcess runs the etcd binary at path as a child process.
func startEtcdProcess(path string) (*etcdServer, error) {
	dir, err := os.MkdirTemp("", "switchyard-topobench-etcd-")
	if err != nil {
		return nil, err
	}
	s := &etcdServer{dir: dir}
	if out, err := exec.Command(path, "--version").Output(); err == nil {
		// "etcd Version: 3.4.23" -> "etcd 3.4.23"
		s.Version = strings.Replace(firstLine(string(out)), "Version: ", "", 1)
	}
	client, err1 := freeLoopbackURL()
	peer, err2 := freeLoopbackURL()
	if err := errors.Join(err1, err2); err != nil {
		s.Stop()
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		s.Stop()
		return nil, err
	}
	defer logf.Close()
	s.cmd = exec.Command(path,
		"--name", "bench",
		"--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client.String(),
		"--advertise-client-urls", client.String(),
		"--listen-peer-urls", peer.String(),
		"--initial-advertise-peer-urls", peer.String(),
		"--initial-cluster", "bench="+peer.String(),
		"--log-level", "warn",
	)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = childProcAttr()
	if err := s.cmd.Start(); err != nil {
		s.cmd = nil
		s.Stop()
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	s.Pid = s.cmd.Process.Pid
	s.exit = make(chan error, 1)
	go func() { s.exit <- s.cmd.Wait() }()
	s.Endpoint = client.String()
	if err := s.waitReady(30 * time.Second); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "etcd.log"))
		s.Stop()
		return nil, fmt.Errorf("etcd process: %w; log:\n%s", err, tail(string(log), 2000))
	}
	return s, nil
}

// waitReady waits until a Get succeeds or the process exits.
func (s *etcdServer) waitReady(limit time.Duration) error {
	cli, err := newEtcdClient(s.Endpoint)
	if err != nil {
		return err
	}
	defer cli.Close()
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err = cli.Get(ctx, "/ready-check")
		cancel()
		if err == nil {
			return nil
		}
		select {
		case werr := <-s.exit:
			s.exit <- werr // for Stop
			return fmt.Errorf("exited: %v", werr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %w", limit, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop stops the server (the process: SIGTERM, then SIGKILL after 10 s, by
// its pid only) and removes its data directory.
func (s *etcdServer) Stop() {
	if s.embed != nil {
		s.embed.Close()
		s.embed = nil
	}
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exit:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exit
		}
		s.cmd = nil
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
		s.dir = ""
	}
}

// newEtcdClient is the harness's own client, for registrations.
func newEtcdClient(endpoint string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
}
