package config

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	libconfig "github.com/switchyard-db/switchyard/lib/config"
	"go.uber.org/zap/zaptest"
)

func doc(clusters ...string) string {
	s := "[proxy]\naddr = \"127.0.0.1:6000\"\n"
	for _, c := range clusters {
		s += fmt.Sprintf("\n[[cluster]]\nname = %q\ninstances = [\"127.0.0.1:3306\"]\n", c)
	}
	return s
}

// applied records what the manager applied.
type applied struct {
	mu    sync.Mutex
	cfgs  []*libconfig.Config
	fail  error
	okObs []bool
}

func (a *applied) apply(_, next *libconfig.Config) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cfgs = append(a.cfgs, next)
	return a.fail
}

func (a *applied) observe(ok bool, _ time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.okObs = append(a.okObs, ok)
}

func (a *applied) clusters() [][]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out [][]string
	for _, c := range a.cfgs {
		var names []string
		for _, cl := range c.Clusters {
			names = append(names, cl.Name)
		}
		out = append(out, names)
	}
	return out
}

func setup(t *testing.T, path, initial string) (*Manager, *applied) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(initial), 0o600))
	m := New(zaptest.NewLogger(t), path)
	m.pollInterval = 50 * time.Millisecond
	_, err := m.Load()
	require.NoError(t, err)
	a := &applied{}
	m.SetApply(a.apply, a.observe)
	return m, a
}

func runWatcher(t *testing.T, m *Manager) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func TestReloadAppliesValidAndKeepsOldOnInvalid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "proxy.toml")
	m, a := setup(t, path, doc("a"))
	firstSum := m.Checksum()

	require.NoError(t, os.WriteFile(path, []byte(doc("a", "b")), 0o600))
	require.NoError(t, m.Reload(SourceSIGHUP))
	require.Equal(t, [][]string{{"a", "b"}}, a.clusters())
	require.NotEqual(t, firstSum, m.Checksum())
	st := m.Status()
	require.Equal(t, ResultOK, st.LastResult)
	require.Equal(t, SourceSIGHUP, st.LastSource)
	require.Empty(t, st.LastError)

	// Unknown key, duplicate cluster, syntax error: nothing changes, and the
	// status says where.
	for _, bad := range []struct{ text, want string }{
		{doc("a") + "bogus = 1\n", "line 7: unknown key cluster[0].bogus"},
		{doc("a", "a"), `line 9: cluster[1].name "a": duplicates cluster[0].name`},
		{"[proxy\n", "line 1: syntax error"},
	} {
		require.NoError(t, os.WriteFile(path, []byte(bad.text), 0o600))
		err := m.Reload(SourceSIGHUP)
		require.ErrorIs(t, err, libconfig.ErrInvalid)
		require.ErrorContains(t, err, path+": "+bad.want)
		st := m.Status()
		require.Equal(t, ResultError, st.LastResult)
		require.Contains(t, st.LastError, bad.want)
		require.Len(t, m.Current().Clusters, 2, "the old config keeps running")
	}
	require.Len(t, a.clusters(), 1, "a bad config is never applied")
	st = m.Status()
	require.Equal(t, 4, st.Reloads)
	require.Equal(t, 3, st.Failures)
	require.Equal(t, []bool{true, false, false, false}, a.okObs)

	// SIGHUP with nothing changed is a success that applies nothing.
	require.NoError(t, os.WriteFile(path, []byte(doc("a", "b")), 0o600))
	require.NoError(t, m.Reload(SourceSIGHUP))
	require.Len(t, a.clusters(), 1)
	require.Equal(t, ResultOK, m.Status().LastResult)
}

func TestApplyErrorStillRuns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "proxy.toml")
	m, a := setup(t, path, doc("a"))
	a.fail = errors.New("listening on 127.0.0.1:6001: address in use")
	require.NoError(t, os.WriteFile(path, []byte(doc("a", "b")), 0o600))
	err := m.Reload(SourceFile)
	require.ErrorContains(t, err, "address in use")
	require.Len(t, m.Current().Clusters, 2, "the rest of the config was applied")
	require.Equal(t, ResultError, m.Status().LastResult)
}

func TestSetPersistsAndValidates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "proxy.toml")
	require.NoError(t, os.WriteFile(path, []byte(doc("a")), 0o640))
	m, a := setup(t, path, doc("a"))
	require.NoError(t, os.Chmod(path, 0o640))

	err := m.Set([]byte(doc("a") + "[nope]\n"))
	require.ErrorIs(t, err, libconfig.ErrInvalid)
	require.ErrorContains(t, err, "request body: line 7: unknown key nope")
	data, _ := os.ReadFile(path)
	require.Equal(t, doc("a"), string(data), "a rejected config is not written")

	require.NoError(t, m.Set([]byte(doc("a", "c"))))
	data, _ = os.ReadFile(path)
	require.Equal(t, doc("a", "c"), string(data), "an applied config is written to the file")
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o640), st.Mode().Perm(), "the file keeps its mode")
	require.Equal(t, [][]string{{"a", "c"}}, a.clusters())
	require.Equal(t, SourceAPI, m.Status().LastSource)
	// The file now matches the running config: a reload is a no-op.
	require.NoError(t, m.Reload(SourceFile))
	require.Len(t, a.clusters(), 1)
}

func TestNeedsRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "proxy.toml")
	m, _ := setup(t, path, doc("a"))
	next := doc("a", "b") + "\n[log]\nlevel = \"debug\"\n[balance]\npolicy = \"connection\"\n[digests]\nenabled = false\nmax-per-cluster = 64\n"
	next = "[proxy]\naddr = \"127.0.0.1:6001\"\ndefault-cluster = \"a\"\n" + next[len("[proxy]\naddr = \"127.0.0.1:6000\"\n"):]
	require.NoError(t, m.Set([]byte(next)))
	require.Equal(t, []string{"proxy.addr", "log.level"}, m.Status().NeedsRestart)
	// Going back to the running value clears it; live settings never appear.
	require.NoError(t, m.Set([]byte(doc("a", "b", "c"))))
	require.Empty(t, m.Status().NeedsRestart)
}

func TestWatchSeesEditsRenamesAndSymlinkSwaps(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "proxy.toml")
	m, a := setup(t, path, doc("a"))
	runWatcher(t, m)
	waitClusters := func(want ...string) {
		t.Helper()
		require.Eventually(t, func() bool {
			return fmt.Sprint(m.Current().Clusters) != "" && len(m.Current().Clusters) == len(want) &&
				m.Current().Clusters[len(want)-1].Name == want[len(want)-1]
		}, 10*time.Second, 10*time.Millisecond, "want clusters %v, have %v", want, a.clusters())
	}

	// In-place write.
	require.NoError(t, os.WriteFile(path, []byte(doc("a", "b")), 0o600))
	waitClusters("a", "b")

	// Editor style: write a temporary file and rename it over.
	tmp := filepath.Join(dir, ".proxy.toml.swp")
	require.NoError(t, os.WriteFile(tmp, []byte(doc("a", "b", "c")), 0o600))
	require.NoError(t, os.Rename(tmp, path))
	waitClusters("a", "b", "c")
	require.Equal(t, SourceFile, m.Status().LastSource)
}

func TestWatchFollowsConfigMapSymlinkSwap(t *testing.T) {
	// Kubernetes mounts a ConfigMap as dir/proxy.toml -> ..data/proxy.toml,
	// ..data -> ..2026_11_24_v1, and updates by swapping the ..data link.
	dir := t.TempDir()
	write := func(version, text string) {
		vdir := filepath.Join(dir, "..v"+version)
		require.NoError(t, os.Mkdir(vdir, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(vdir, "proxy.toml"), []byte(text), 0o600))
		tmpLink := filepath.Join(dir, "..data_tmp")
		require.NoError(t, os.Symlink("..v"+version, tmpLink))
		require.NoError(t, os.Rename(tmpLink, filepath.Join(dir, "..data")))
	}
	write("1", doc("a"))
	path := filepath.Join(dir, "proxy.toml")
	require.NoError(t, os.Symlink(filepath.Join("..data", "proxy.toml"), path))
	m := New(zaptest.NewLogger(t), path)
	m.pollInterval = 50 * time.Millisecond
	_, err := m.Load()
	require.NoError(t, err)
	a := &applied{}
	m.SetApply(a.apply, a.observe)
	runWatcher(t, m)

	write("2", doc("a", "k8s"))
	require.Eventually(t, func() bool { return len(m.Current().Clusters) == 2 }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, [][]string{{"a", "k8s"}}, a.clusters())
}

// With events unavailable (or missed), polling alone finds the change.
func TestPollingFindsChangesWithoutEvents(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "proxy.toml")
	m, _ := setup(t, path, doc("a"))
	w := newFileWatcher(zaptest.NewLogger(t), path, 20*time.Millisecond)
	w.noEvents = true
	ctx, cancel := context.WithCancel(context.Background())
	calls := make(chan struct{}, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(ctx, []byte(doc("a")), func() { calls <- struct{}{} })
	}()
	defer func() { cancel(); <-done }()
	require.NoError(t, os.WriteFile(path, []byte(doc("a", "z")), 0o600))
	select {
	case <-calls:
	case <-time.After(10 * time.Second):
		t.Fatal("no callback after the file changed")
	}
	_ = m
}

// A save caught half way (truncated, not yet written) by a poll is not read
// until the file has been quiet for the debounce: the callback sees the
// finished file only, once.
func TestPollWaitsForASaveToSettle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "proxy.toml")
	require.NoError(t, os.WriteFile(path, []byte(doc("a")), 0o600))
	w := newFileWatcher(zaptest.NewLogger(t), path, 5*time.Millisecond)
	w.noEvents = true
	w.quiet = 2 * time.Second // far longer than the gap below, however loaded the machine
	ctx, cancel := context.WithCancel(context.Background())
	seen := make(chan string, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(ctx, []byte(doc("a")), func() {
			b, _ := os.ReadFile(path)
			seen <- string(b)
		})
	}()
	defer func() { cancel(); <-done }()

	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0o600)
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond) // many polls see the empty file
	_, err = f.WriteString(doc("a", "b"))
	require.NoError(t, err)
	require.NoError(t, f.Close())

	select {
	case got := <-seen:
		require.Equal(t, doc("a", "b"), got, "the half-written file was read")
	case <-time.After(10 * time.Second):
		t.Fatal("no callback after the save")
	}
	time.Sleep(300 * time.Millisecond)
	require.Empty(t, seen, "one save, one callback")
}

func TestSubscribersNeverBlock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "proxy.toml")
	m, _ := setup(t, path, doc("a"))
	ch, cancel := m.Subscribe()
	defer cancel()
	for i := range 20 {
		names := []string{"a"}
		for j := 0; j < i%3; j++ {
			names = append(names, fmt.Sprintf("x%d", j))
		}
		require.NoError(t, m.Set([]byte(doc(names...))))
	}
	require.Len(t, ch, 1, "one pending wake-up, however many reloads")
}

func TestReloadWithoutFile(t *testing.T) {
	m := New(zaptest.NewLogger(t), "")
	m.Init(libconfig.NewDefault(), nil)
	require.ErrorIs(t, m.Reload(SourceSIGHUP), ErrNoFile)
}

// A reload, or a PUT, that would open the API beyond loopback without a
// credential is refused with the line of api.addr; the running config, and
// the file for a PUT, stay as they were.
func TestOpenAPIRefusedOnReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "proxy.toml")
	m, a := setup(t, path, doc("a"))
	before := m.Current()
	open := doc("a") + "\n[api]\naddr = \"0.0.0.0:3080\"\n"
	const want = `line 9: api.addr "0.0.0.0:3080" listens beyond this host with no credential`

	require.NoError(t, os.WriteFile(path, []byte(open), 0o600))
	err := m.Reload(SourceSIGHUP)
	require.ErrorIs(t, err, libconfig.ErrInvalid)
	require.ErrorContains(t, err, path+": "+want)
	require.Contains(t, m.Status().LastError, want)
	require.Same(t, before, m.Current())

	require.NoError(t, os.WriteFile(path, []byte(doc("a")), 0o600))
	err = m.Set([]byte(open))
	require.ErrorIs(t, err, libconfig.ErrInvalid)
	require.ErrorContains(t, err, "request body: "+want)
	require.Same(t, before, m.Current())
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, doc("a"), string(data), "a refused PUT does not touch the file")
	require.Empty(t, a.clusters(), "nothing was applied")
}
