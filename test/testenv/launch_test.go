package testenv

import (
	"net"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLaunchMariaDB(t *testing.T) {
	// A deep directory makes the socket live outside it, which Close must remove.
	dir := filepath.Join(t.TempDir(), "a-directory-name-long-enough-to-push-the-socket-path-past-sun-path", "db")
	m, err := LaunchMariaDB(dir, MariaDBOptions{OwnProcessGroup: true})
	require.NoError(t, err)
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = m.Close()
		}
	})
	require.Equal(t, dir, m.Dir)
	require.NotEqual(t, dir, filepath.Dir(m.Socket), "the socket should have moved to a short directory")
	require.Equal(t, "1", queryOne(t, m.RootDB(t), "SELECT 1"))
	require.Equal(t, "1", queryOne(t, openDSN(t, m.NativeDSN()), "SELECT 1"))
	if runtime.GOOS == "linux" {
		pgid, err := syscall.Getpgid(m.Pid())
		require.NoError(t, err)
		require.Equal(t, m.Pid(), pgid, "mariadbd leads its own process group")
	}

	require.NoError(t, m.Close(), "a clean shutdown exits 0")
	closed = true
	_, err = net.DialTimeout("tcp", m.Addr(), time.Second)
	require.Error(t, err, "port still accepts after Close")
	_, err = os.Stat(filepath.Dir(m.Socket))
	require.ErrorIs(t, err, os.ErrNotExist, "the socket directory outside Dir is removed")
	_, err = os.Stat(m.DataDir)
	require.NoError(t, err, "Dir belongs to the caller and is kept")
	require.NoError(t, m.Close(), "Close is idempotent")
}
