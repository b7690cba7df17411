package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// recordingTB is a test that has failed, recording what would be logged and
// holding its cleanups for the caller to run.
type recordingTB struct {
	testing.TB
	failed   bool
	logs     []string
	cleanups []func()
}

func (r *recordingTB) Helper()                    {}
func (r *recordingTB) Name() string               { return "TestX/sub case" }
func (r *recordingTB) Failed() bool               { return r.failed }
func (r *recordingTB) Cleanup(f func())           { r.cleanups = append(r.cleanups, f) }
func (r *recordingTB) Logf(f string, args ...any) { r.logs = append(r.logs, fmt.Sprintf(f, args...)) }

func TestOnFailureShowLog(t *testing.T) {
	keep := t.TempDir()
	t.Setenv(KeepLogDirEnv, keep)
	path := filepath.Join(t.TempDir(), "server.log")
	var b strings.Builder
	for i := range 200 {
		fmt.Fprintf(&b, "before %d\n", i)
	}
	offset := int64(b.Len())
	for i := range 200 {
		fmt.Fprintf(&b, "during %d\n", i)
	}
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))

	passed := &recordingTB{TB: t}
	OnFailureShowLog(passed, "etcd", path, offset)
	for _, f := range passed.cleanups {
		f()
	}
	require.Empty(t, passed.logs, "a test that passed prints nothing")

	failed := &recordingTB{TB: t, failed: true}
	OnFailureShowLog(failed, "etcd", path, offset)
	for _, f := range failed.cleanups {
		f()
	}
	require.Len(t, failed.logs, 1)
	out := failed.logs[0]
	require.Contains(t, out, "during 199")
	require.Contains(t, out, fmt.Sprintf("during %d", 200-FailureTailLines))
	require.NotContains(t, out, fmt.Sprintf("during %d\n", 200-FailureTailLines-1), "only the tail")
	require.NotContains(t, out, "before", "only what was written during the test")
	kept, err := os.ReadFile(filepath.Join(keep, "TestX_sub_case", "etcd-server.log"))
	require.NoError(t, err, "the whole log is kept outside the test's temporary directory")
	require.Equal(t, b.String(), string(kept))
}
