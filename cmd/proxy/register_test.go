package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/switchyard-db/switchyard/pkg/register"
	"github.com/switchyard-db/switchyard/test/testenv"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

func TestRegisterFlags(t *testing.T) {
	o, err := parseRegisterFlags([]string{
		"--etcd-endpoints", "127.0.0.1:2379, 127.0.0.2:2379,",
		"--addr", "10.0.0.5:3306",
		"--status-addr", "0.0.0.0:10080",
		"--prefix", "/keyspaces/tidb/ks/topology/tidb",
		"--pid", "1234",
		"--ttl", "20s",
		"--label", "zone=z1", "--label", "host = h1 ",
		"--version", "10.11.6-MariaDB",
		"--etcd-ca", "/etc/ca.pem", "--etcd-cert", "/etc/c.pem", "--etcd-key", "/etc/k.pem",
		"--log-level", "warn",
	}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, register.Config{
		EtcdEndpoints: []string{"127.0.0.1:2379", "127.0.0.2:2379"},
		Prefix:        "/keyspaces/tidb/ks/topology/tidb",
		Addr:          "10.0.0.5:3306",
		StatusAddr:    "0.0.0.0:10080",
		Pid:           1234,
		TTL:           20 * time.Second,
		Labels:        map[string]string{"zone": "z1", "host": "h1"},
		Version:       "10.11.6-MariaDB",
	}, o.reg)
	require.Equal(t, "/etc/ca.pem", o.etcdTLS.CA)
	require.Equal(t, "/etc/c.pem", o.etcdTLS.Cert)
	require.Equal(t, "/etc/k.pem", o.etcdTLS.Key)
	require.Equal(t, "warn", o.log.Level)

	o, err = parseRegisterFlags([]string{"--etcd-endpoints", "e:2379", "--addr", "h:3306", "--status-addr", ":10080", "--pid-file", "/run/mysqld.pid"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, register.DefaultPrefix, o.reg.Prefix)
	require.Equal(t, register.DefaultTTL, o.reg.TTL)
	require.Equal(t, "/run/mysqld.pid", o.reg.PidFile)
	require.Nil(t, o.reg.Labels)
	require.Equal(t, "info", o.log.Level)
	require.False(t, o.etcdTLS.Enabled())
}

func TestRegisterFlagErrors(t *testing.T) {
	base := []string{"--etcd-endpoints", "e:2379", "--addr", "h:3306", "--status-addr", ":10080"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing all", nil, "missing --addr, --etcd-endpoints, --status-addr"},
		{"missing addr", []string{"--etcd-endpoints", "e:2379", "--status-addr", ":1"}, "missing --addr"},
		{"label without =", slices.Concat(base, []string{"--label", "zone"}), "not key=value"},
		{"label without key", slices.Concat(base, []string{"--label", "=v"}), "not key=value"},
		{"duplicate label", slices.Concat(base, []string{"--label", "a=1", "--label", "a=2"}), "given twice"},
		{"bad ttl", slices.Concat(base, []string{"--ttl", "soon"}), "invalid value"},
		{"bad pid", slices.Concat(base, []string{"--pid", "x"}), "invalid value"},
		{"unknown flag", slices.Concat(base, []string{"--pd", "x"}), "not defined"},
		{"positional", slices.Concat(base, []string{"extra"}), "unexpected arguments: extra"},
		{"cert without key", slices.Concat(base, []string{"--etcd-cert", "c.pem"}), "go together"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			_, err := parseRegisterFlags(tt.args, &out)
			require.Error(t, err)
			require.Contains(t, err.Error()+out.String(), tt.want)
		})
	}
	var out bytes.Buffer
	_, err := parseRegisterFlags([]string{"--help"}, &out)
	require.ErrorIs(t, err, flag.ErrHelp)
	require.Contains(t, out.String(), "usage: proxy register")
}

func TestRegisterExitCodes(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	base := []string{"register", "--etcd-endpoints", "127.0.0.1:1", "--addr", "127.0.0.1:3306", "--log-level", "error"}
	require.Equal(t, 2, run([]string{"register"}), "no flags")
	require.Equal(t, 0, run([]string{"register", "--help"}), "help asked for is no error")
	require.Equal(t, 2, run(slices.Concat(base, []string{"--status-addr", "127.0.0.1:0", "--pid", "1", "--pid-file", "f"})), "rejected by register.New")
	require.Equal(t, 2, run(slices.Concat(base, []string{"--status-addr", "127.0.0.1:0", "--prefix", "nope"})), "rejected by register.New")
	require.Equal(t, 2, run(slices.Concat(base[:len(base)-2], []string{"--status-addr", "127.0.0.1:0", "--log-level", "loud"})))
	require.Equal(t, 1, run(slices.Concat(base, []string{"--status-addr", "127.0.0.1:0", "--etcd-ca", filepath.Join(t.TempDir(), "missing.pem")})))
	require.Equal(t, 1, run(slices.Concat(base, []string{"--status-addr", taken.Addr().String()})), "the status port is taken")
}

// The real entry point: registers, and on SIGTERM removes its keys and exits 0.
func TestRegisterUntilSIGTERM(t *testing.T) {
	client := url.URL{Scheme: "http", Host: testenv.FreeAddr(t)}
	peer := url.URL{Scheme: "http", Host: testenv.FreeAddr(t)}
	cfg := embed.NewConfig()
	cfg.Dir = t.TempDir()
	cfg.LogLevel = "error"
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = fmt.Sprintf("%s=%s", cfg.Name, peer.String())
	etcd, err := embed.StartEtcd(cfg)
	require.NoError(t, err)
	defer etcd.Close()
	select {
	case <-etcd.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("embedded etcd did not become ready")
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{client.String()}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	defer cli.Close()

	const addr = "127.0.0.1:4010"
	ttlKey := register.DefaultPrefix + "/" + addr + "/ttl"
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"register", "--etcd-endpoints", client.String(), "--addr", addr,
			"--status-addr", "127.0.0.1:0", "--version", "v", "--ttl", "5s", "--log-level", "warn"})
	}()
	exists := func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := cli.Get(ctx, ttlKey)
		return err == nil && len(resp.Kvs) == 1
	}
	// The keys appear after the signal handler is installed, so the signal
	// below cannot kill the test binary.
	require.Eventually(t, exists, 30*time.Second, 50*time.Millisecond)
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGTERM))
	select {
	case code := <-done:
		require.Equal(t, 0, code)
	case <-time.After(30 * time.Second):
		t.Fatal("proxy register did not stop on SIGTERM")
	}
	require.False(t, exists(), "the keys are removed on SIGTERM")
}
