package testenv

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func fakeProxyConfigTOML(addr, level string) string {
	return fmt.Sprintf(`
[proxy]
addr = %q
max-connections = 100

[log]
level = %q

[[cluster]]
name = "main"
instances = ["127.0.0.1:3306"]
`, addr, level)
}

func TestStartProxyWithFakeProxy(t *testing.T) {
	t.Setenv(fakeProxyEnv, "1")
	bin, err := os.Executable()
	require.NoError(t, err)

	addr := FreeAddr(t)
	p := StartProxy(t, bin, fakeProxyConfigTOML(addr, "info"))
	require.Equal(t, addr, p.Addr)
	require.NotZero(t, p.Pid())
	conn, err := net.DialTimeout("tcp", p.Addr, time.Second)
	require.NoError(t, err)
	require.NoError(t, conn.Close())

	require.NoError(t, p.WriteConfig(fakeProxyConfigTOML(addr, "debug")))
	require.NoError(t, p.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool {
		return strings.Contains(p.LogContents(), "reloaded, level debug")
	}, 10*time.Second, 20*time.Millisecond)

	require.NoError(t, p.Signal(syscall.SIGTERM))
	require.NoError(t, p.Wait(), p.LogContents())
	require.ErrorIs(t, p.Signal(syscall.SIGTERM), os.ErrProcessDone)
	require.Contains(t, p.LogContents(), "shutting down")
}

func TestProxyKill(t *testing.T) {
	t.Setenv(fakeProxyEnv, "1")
	bin, err := os.Executable()
	require.NoError(t, err)

	p := StartProxy(t, bin, fakeProxyConfigTOML(FreeAddr(t), "info"))
	p.Kill()
	select {
	case <-p.Exited():
	default:
		t.Fatal("Exited not closed after Kill")
	}
	require.ErrorContains(t, p.Wait(), "killed")
	_, err = net.DialTimeout("tcp", p.Addr, time.Second)
	require.Error(t, err)
}

func TestBuildProxy(t *testing.T) {
	root, err := ModuleRoot()
	require.NoError(t, err)
	if mains, _ := filepath.Glob(filepath.Join(root, "cmd", "proxy", "*.go")); len(mains) == 0 {
		t.Skip("cmd/proxy has no Go files yet; nothing to build")
	}
	bin := BuildProxy(t)
	require.FileExists(t, bin)
	require.Equal(t, bin, BuildProxy(t), "the second call must reuse the first build")
}
