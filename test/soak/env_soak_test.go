//go:build soak

package soak

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/test/etcdtest"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// ---------------------------------------------------------------------------
// etcd: Debian's etcd binary as a process, so that the soak can SIGKILL and
// restart it. It is both the fleet's etcd and the PD of cluster "disc".

func startEtcd(t *testing.T) *testenv.Etcd {
	t.Helper()
	return testenv.StartEtcd(t, testenv.EtcdOptions{Name: "soak", LogLevel: "warn"})
}

// restartEtcd is SIGKILL, a pause, and a start on the same ports and data.
func restartEtcd(e *testenv.Etcd, down time.Duration) error {
	e.Kill()
	time.Sleep(down)
	return e.Restart(60 * time.Second)
}

// ---------------------------------------------------------------------------
// Registration of a MariaDB server in etcd the way TiDB registers itself:
// <prefix>/<addr>/info, and <prefix>/<addr>/ttl under a lease the server
// keeps alive. When the server dies its lease is no longer kept alive and
// the ttl key expires; a restarted server registers again.

const registrationTTL = 5 // seconds

type registration struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func register(cli *clientv3.Client, addr string, statusPort uint) *registration {
	ctx, cancel := context.WithCancel(context.Background())
	r := &registration{cancel: cancel, done: make(chan struct{})}
	prefix := config.DefaultTopologyPrefix + "/" + addr
	go func() {
		defer close(r.done)
		for ctx.Err() == nil {
			if err := keepRegistered(ctx, cli, prefix, statusPort); err != nil && ctx.Err() == nil {
				// etcd is restarting: register afresh once it is back, as TiDB does.
				select {
				case <-ctx.Done():
				case <-time.After(500 * time.Millisecond):
				}
			}
		}
	}()
	return r
}

// keepRegistered writes the keys and keeps the lease alive until ctx ends
// or the lease is lost.
func keepRegistered(ctx context.Context, cli *clientv3.Client, prefix string, statusPort uint) error {
	opCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := cli.Put(opCtx, prefix+"/info", etcdtest.InfoJSON("10.11-MariaDB", statusPort, "")); err != nil {
		return err
	}
	lease, err := cli.Grant(opCtx, registrationTTL)
	if err != nil {
		return err
	}
	if _, err := cli.Put(opCtx, prefix+"/ttl", strconv.FormatInt(time.Now().UnixNano(), 10), clientv3.WithLease(lease.ID)); err != nil {
		return err
	}
	ch, err := cli.KeepAlive(ctx, lease.ID)
	if err != nil {
		return err
	}
	for range ch {
	}
	return fmt.Errorf("lease %x lost", lease.ID)
}

// startStatusPort serves a TiDB-like status port for the MariaDB server at
// addr, as `proxy register` does: /status answers 200 while the server
// accepts connections (a TCP connect, nothing read), 500 otherwise, and
// /metrics a page with the four metrics the proxy reads. The proxies then
// check each backend of cluster disc on two kept connections, a COM_PING
// and a GET of /status, in their probers' rounds.
func startStatusPort(t *testing.T, addr string) uint {
	start := time.Now()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			fmt.Fprintf(w, "process_cpu_seconds_total %g\nprocess_resident_memory_bytes 1e+09\n"+
				"tidb_server_maxprocs 2\ntidb_server_memory_quota_bytes 8e+09\n", 0.1*time.Since(start).Seconds())
			return
		}
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		_ = c.Close()
		_, _ = io.WriteString(w, `{"connections":0}`)
	}))
	t.Cleanup(srv.Close)
	return uint(srv.Listener.Addr().(*net.TCPAddr).Port)
}

// stop stops keeping the lease alive: the ttl key expires within
// registrationTTL, like a crashed TiDB's.
func (r *registration) stop() {
	r.cancel()
	<-r.done
}

// ---------------------------------------------------------------------------
// Proxies of the fleet.

const (
	adminToken = "soak-admin-token"
	readToken  = "soak-read-token"
	clusterD   = "disc"   // etcd-discovered; its backends are killed
	clusterS   = "static" // static instances; no fault aimed at it
)

type proxyNode struct {
	name       string
	sqlAddr    string // cluster disc (default-cluster)
	staticAddr string // the [[route]] port of cluster static
	apiAddr    string

	mu   sync.Mutex
	proc *testenv.Proxy
}

func (n *proxyNode) current() *testenv.Proxy {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// variant is what a reload changes: the balance policy, the rebalance
// ratio, and a [[route]] by user that comes and goes.
type variant int

func (v variant) policy() string { return [...]string{"resource", "connection"}[v%2] }
func (v variant) ratio() string  { return [...]string{"1.2", "1.5", "2.0"}[v%3] }
func (v variant) userRoute() bool {
	return v%4 >= 2
}

func proxyConfig(n *proxyNode, etcdAddr string, static []string, v variant) string {
	_, port, _ := strings.Cut(n.staticAddr, ":")
	userRoute := ""
	if v.userRoute() {
		userRoute = "\n[[route]]\ncluster = \"static\"\nusers = [\"soak_route_*\"]\n"
	}
	return fmt.Sprintf(`# Written by the soak (test/soak), reload variant %d.
[proxy]
addr = %q
advertise-addr = "127.0.0.1"
graceful-close-conn-timeout = "5s"
default-cluster = %q

[api]
addr = %q
token = %q
read-token = %q

[log]
level = "info"
format = "json"

[health-check]
interval = "500ms"
timeout = "1s"
failures-to-unhealthy = 2
sql-user = %q
sql-password = %q

[balance]
policy = %q
rebalance-ratio = %s

[coordination]
etcd-endpoints = [%q]
fleet = "soak"
node-id = %q
election-ttl = "3s"
node-ttl = "6s"

[[cluster]]
name = %q
etcd-endpoints = [%q]
migration-user = %q
migration-password = %q

[[cluster]]
name = %q
instances = [%q, %q]
migration-user = %q
migration-password = %q

[[route]]
cluster = %q
ports = [%s]
%s`, int(v), n.sqlAddr, clusterD, n.apiAddr, adminToken, readToken,
		testenv.AdminUser, testenv.AdminPassword, v.policy(), v.ratio(),
		etcdAddr, n.name,
		clusterD, etcdAddr, testenv.AdminUser, testenv.AdminPassword,
		clusterS, static[0], static[1], testenv.AdminUser, testenv.AdminPassword,
		clusterS, port, userRoute)
}

// reload writes the config and sends SIGHUP (the file watch may reload
// it as well; both are reloads of the same file).
func (n *proxyNode) reload(cfg string) error {
	p := n.current()
	if err := p.WriteConfig(cfg); err != nil {
		return err
	}
	return p.Signal(syscall.SIGHUP)
}
