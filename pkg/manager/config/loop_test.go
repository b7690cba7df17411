package config

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
)

// The playground logs to proxy.log beside proxy.toml. A rejected edit logs
// an error there; if that write counted as a change of the config, the next
// rejection would log again, and so on forever (issue 14).
func TestLogBesideConfigCausesNoReloadLoop(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "proxy.toml")
	logFile, err := os.OpenFile(filepath.Join(dir, "proxy.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	require.NoError(t, err)
	defer logFile.Close()
	lg := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()),
		zapcore.AddSync(logFile), zap.DebugLevel))
	require.NoError(t, os.WriteFile(path, []byte(doc("a")), 0o600))
	m := New(lg, path)
	m.pollInterval = 50 * time.Millisecond
	_, err = m.Load()
	require.NoError(t, err)
	a := &applied{}
	m.SetApply(a.apply, a.observe)
	runWatcher(t, m)

	require.NoError(t, os.WriteFile(path, []byte(doc("a")+"bogus = 1\n"), 0o600))
	require.Eventually(t, func() bool { return m.Status().Failures >= 1 }, 10*time.Second, 10*time.Millisecond)
	// Neighbours keep being written: the log, and another file.
	for i := range 10 {
		fmt.Fprintf(logFile, "line %d\n", i)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "other.txt"), []byte{byte(i)}, 0o600))
		time.Sleep(30 * time.Millisecond)
	}
	time.Sleep(time.Second) // many debounce and poll periods
	st := m.Status()
	require.Equal(t, 1, st.Failures, "one bad edit is one rejection")
	require.Equal(t, 1, st.Reloads)
	require.Empty(t, a.clusters(), "nothing was applied")
}

// The watcher calls back for the config file, not for its neighbours.
func TestWatcherIgnoresNeighbours(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "proxy.toml")
	require.NoError(t, os.WriteFile(path, []byte(doc("a")), 0o600))
	w := newFileWatcher(zaptest.NewLogger(t), path, time.Hour) // events only
	var calls atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(ctx, []byte(doc("a")), func() { calls.Add(1) })
	}()
	defer func() { cancel(); <-done }()
	time.Sleep(200 * time.Millisecond) // the watch is set up
	for i := range 5 {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "proxy.log"), []byte{byte(i)}, 0o600))
		require.NoError(t, os.WriteFile(filepath.Join(dir, ".proxy.toml.swp"), []byte{byte(i)}, 0o600))
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	require.Zero(t, calls.Load(), "writes beside the config are not changes of it")
	// The file itself still counts.
	require.NoError(t, os.WriteFile(path, []byte(doc("a", "b")), 0o600))
	require.Eventually(t, func() bool { return calls.Load() >= 1 }, 10*time.Second, 10*time.Millisecond)
}

// Reverting a rejected edit clears the failure without a SIGHUP: the file
// equals the running config again, so nothing is applied, but the status,
// the metric (observer) and the health warning go back to success.
func TestRevertingBadEditClearsFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "proxy.toml")
	m, a := setup(t, path, doc("a"))
	runWatcher(t, m)
	require.NoError(t, os.WriteFile(path, []byte(doc("a")+"bogus = 1\n"), 0o600))
	require.Eventually(t, func() bool { return m.Status().LastResult == ResultError }, 10*time.Second, 10*time.Millisecond)

	require.NoError(t, os.WriteFile(path, []byte(doc("a")), 0o600))
	require.Eventually(t, func() bool { return m.Status().LastResult == ResultOK }, 10*time.Second, 10*time.Millisecond)
	st := m.Status()
	require.Empty(t, st.LastError)
	require.Equal(t, SourceFile, st.LastSource)
	require.Equal(t, 1, st.Failures)
	a.mu.Lock()
	obs := append([]bool(nil), a.okObs...)
	a.mu.Unlock()
	require.Equal(t, []bool{false, true}, obs, "the reload metric goes back to 1")
	require.Empty(t, a.clusters(), "the running config was not re-applied")

	// Once cleared, more events on the unchanged file record nothing.
	require.NoError(t, os.WriteFile(path, []byte(doc("a")), 0o600))
	time.Sleep(500 * time.Millisecond)
	require.Equal(t, 2, m.Status().Reloads)
}

// A reverted edit keeps reporting a restart still pending from an earlier
// applied change: the running config differs from the start-up one.
func TestRevertKeepsPendingRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "proxy.toml")
	m, _ := setup(t, path, doc("a"))
	moved := strings.Replace(doc("a"), "6000", "6001", 1)
	require.NoError(t, m.Set([]byte(moved)))
	require.Equal(t, []string{"proxy.addr"}, m.Status().NeedsRestart)
	require.NoError(t, os.WriteFile(path, []byte(moved+"bogus = 1\n"), 0o600))
	require.Error(t, m.Reload(SourceSIGHUP))
	require.NoError(t, os.WriteFile(path, []byte(moved), 0o600))
	require.NoError(t, m.Reload(SourceFile))
	st := m.Status()
	require.Equal(t, ResultOK, st.LastResult)
	require.Equal(t, []string{"proxy.addr"}, st.NeedsRestart)
}

// The effective config keeps the start-up value of a setting that needs a
// restart (issue 14: max-connections = 1 was shown while the proxy still
// ran without a limit) and takes live settings from the file.
func TestEffectiveKeepsRestartSettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "proxy.toml")
	m, _ := setup(t, path, doc("a"))
	require.Same(t, m.Current(), m.Effective(), "nothing pending at start")
	next := strings.Replace(doc("a", "b"), "[proxy]\n", "[proxy]\nmax-connections = 1\ndefault-cluster = \"b\"\n", 1)
	require.NoError(t, m.Set([]byte(next)))
	require.Equal(t, 1, m.Current().Proxy.MaxConnections)
	eff := m.Effective()
	require.Zero(t, eff.Proxy.MaxConnections, "max-connections needs a restart")
	require.Equal(t, "b", eff.Proxy.DefaultCluster, "default-cluster is live")
	require.Len(t, eff.Clusters, 2, "clusters are live")
	require.Equal(t, []string{"proxy.max-connections"}, m.Status().NeedsRestart)
	require.Equal(t, "127.0.0.1:6000", eff.Proxy.Addr)
}

// A config that is a symlink to a file in another directory is followed
// there: an edit of the target is seen at once (the content poll is an hour
// away), while the target's neighbours are ignored.
func TestWatcherFollowsSymlinkToOtherDirectory(t *testing.T) {
	linkDir, targetDir := t.TempDir(), t.TempDir()
	target := filepath.Join(targetDir, "real.toml")
	require.NoError(t, os.WriteFile(target, []byte(doc("a")), 0o600))
	path := filepath.Join(linkDir, "proxy.toml")
	require.NoError(t, os.Symlink(target, path))
	w := newFileWatcher(zaptest.NewLogger(t), path, time.Hour)
	var calls atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(ctx, []byte(doc("a")), func() { calls.Add(1) })
	}()
	defer func() { cancel(); <-done }()
	time.Sleep(200 * time.Millisecond)
	require.NoError(t, os.WriteFile(filepath.Join(targetDir, "neighbour.log"), []byte("x"), 0o600))
	time.Sleep(500 * time.Millisecond)
	require.Zero(t, calls.Load())
	require.NoError(t, os.WriteFile(target, []byte(doc("a", "b")), 0o600))
	require.Eventually(t, func() bool { return calls.Load() >= 1 }, 10*time.Second, 10*time.Millisecond)
}
