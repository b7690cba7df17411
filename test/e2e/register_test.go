package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/switchyard-db/switchyard/test/etcdtest"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// sidecar is a running `proxy register` process.
type sidecar struct {
	cmd        *exec.Cmd
	statusAddr string
	logPath    string
	done       chan struct{}
}

func startSidecar(t *testing.T, bin string, etcd *etcdtest.Etcd, m *testenv.MariaDB) *sidecar {
	t.Helper()
	sc := &sidecar{statusAddr: testenv.FreeAddr(t), logPath: filepath.Join(t.TempDir(), "register.log"), done: make(chan struct{})}
	logf, err := os.Create(sc.logPath)
	require.NoError(t, err)
	sc.cmd = exec.Command(bin, "register", "--etcd-endpoints", etcd.Endpoint, "--addr", m.Addr(),
		"--status-addr", sc.statusAddr, "--pid", fmt.Sprint(m.Pid()), "--ttl", "2s", "--label", "zone=z1")
	sc.cmd.Stdout, sc.cmd.Stderr = logf, logf
	require.NoError(t, sc.cmd.Start())
	go func() {
		_ = sc.cmd.Wait()
		_ = logf.Close()
		close(sc.done)
	}()
	t.Cleanup(func() {
		select {
		case <-sc.done:
		default:
			_ = sc.cmd.Process.Kill() // by pid: only the process this test started
			<-sc.done
		}
		if t.Failed() {
			out, _ := os.ReadFile(sc.logPath)
			t.Logf("proxy register output:\n%s", out)
		}
	})
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + sc.statusAddr + "/status")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "the sidecar's /status never answered 200")
	return sc
}

func keysUnder(t *testing.T, etcd *etcdtest.Etcd, prefix string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := etcd.Client.Get(ctx, prefix, clientv3.WithPrefix())
	require.NoError(t, err)
	var out []string
	for _, kv := range resp.Kvs {
		out = append(out, string(kv.Key))
	}
	return out
}

// TestRegisterSidecar: `proxy register` puts a MariaDB server into a
// cluster's topology the way TiDB registers itself; the proxy routes to it;
// SIGTERM removes it at once, and a killed sidecar's backend leaves the
// topology when its lease expires.
func TestRegisterSidecar(t *testing.T) {
	etcd := etcdtest.Start(t)
	m := testenv.StartMariaDB(t, testenv.MariaDBOptions{})
	bin := testenv.BuildProxy(t)
	addr := testenv.FreeAddr(t)
	testenv.StartProxy(t, bin, fmt.Sprintf(`[proxy]
addr = %q
[api]
addr = ""
[health-check]
interval = "200ms"
[[cluster]]
name = "db"
etcd-endpoints = [%q]
`, addr, etcd.Endpoint))
	login := func() (string, error) { return backendPort(t, addr, testenv.NativeUser, testenv.NativePassword) }

	sc := startSidecar(t, bin, etcd, m)
	// /status answers before the registration is written (the sidecar serves
	// its status port first): wait for the keys rather than read them once.
	want := []string{tidbPrefix + "/" + m.Addr() + "/info", tidbPrefix + "/" + m.Addr() + "/ttl"}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.ElementsMatch(c, want, keysUnder(t, etcd, tidbPrefix+"/"))
	}, 30*time.Second, 50*time.Millisecond, "the sidecar never registered the backend")
	waitRoutable(t, addr, testenv.NativeUser, m)

	// /metrics describes the MariaDB process under TiDB's names.
	resp, err := http.Get("http://" + sc.statusAddr + "/metrics")
	require.NoError(t, err)
	body := make([]byte, 64<<10)
	n, _ := resp.Body.Read(body)
	resp.Body.Close()
	for _, name := range []string{"process_cpu_seconds_total", "process_resident_memory_bytes", "tidb_server_maxprocs", "tidb_server_memory_quota_bytes"} {
		require.Contains(t, string(body[:n]), name)
	}

	// SIGTERM: the keys go at once, and so does the backend.
	require.NoError(t, sc.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-sc.done:
	case <-time.After(15 * time.Second):
		t.Fatal("proxy register did not exit after SIGTERM")
	}
	require.Zero(t, sc.cmd.ProcessState.ExitCode())
	require.Empty(t, keysUnder(t, etcd, tidbPrefix+"/"))
	require.Eventually(t, func() bool {
		_, err := login()
		return err != nil && strings.Contains(err.Error(), "cluster db has no registered backends")
	}, 10*time.Second, 50*time.Millisecond)

	// A killed sidecar cannot clean up: the backend leaves when the lease
	// (2 s) expires; the info key stays behind, as TiDB's does.
	sc = startSidecar(t, bin, etcd, m)
	waitRoutable(t, addr, testenv.NativeUser, m)
	killedAt := time.Now()
	require.NoError(t, sc.cmd.Process.Kill())
	<-sc.done
	require.Eventually(t, func() bool {
		_, err := login()
		return err != nil && strings.Contains(err.Error(), "cluster db has no registered backends")
	}, 20*time.Second, 50*time.Millisecond, "the killed sidecar's backend never left the topology")
	t.Logf("backend left the topology %v after the sidecar was killed (lease 2 s)", time.Since(killedAt).Round(10*time.Millisecond))
	require.Equal(t, []string{tidbPrefix + "/" + m.Addr() + "/info"}, keysUnder(t, etcd, tidbPrefix+"/"))
}
