package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/test/testenv"
)

// make e2e shows only test names live; when a run fails,
// scripts/e2e-failures.sh must print what the failed subtest said (the
// assertion and the log tail it printed), not just "--- FAIL: TestParent"
// (issue 14). It runs here on the -v log of a real failing go test.
func TestFailureReportShowsSubtestOutput(t *testing.T) {
	root, err := testenv.ModuleRoot()
	require.NoError(t, err)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module failing\n\ngo 1.22\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "x_test.go"), []byte(`package failing

import "testing"

func TestParent(t *testing.T) {
	t.Run("Fine", func(t *testing.T) { t.Log("quiet success") })
	t.Run("Broken", func(t *testing.T) {
		t.Parallel()
		t.Log("proxy log tail: the backend said goodbye")
		t.Errorf("the reason it failed: %d", 42)
	})
	t.Run("AlsoFine", func(t *testing.T) { t.Parallel(); t.Log("more quiet success") })
}

func TestOther(t *testing.T) { t.Log("unrelated output") }
`), 0o644))
	cmd := exec.Command("go", "test", "-count=1", "-v", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "the fixture test must fail:\n%s", out)
	logPath := filepath.Join(dir, "e2e.log")
	require.NoError(t, os.WriteFile(logPath, out, 0o644))

	report, err := exec.Command("bash", filepath.Join(root, "scripts", "e2e-failures.sh"), logPath).CombinedOutput()
	require.NoError(t, err, "%s", report)
	r := string(report)
	require.Contains(t, r, "TestParent/Broken")
	require.Contains(t, r, "the reason it failed: 42")
	require.Contains(t, r, "proxy log tail: the backend said goodbye")
	require.NotContains(t, r, "quiet success", "passing tests' output is left out")
	require.NotContains(t, r, "unrelated output")
	require.Equal(t, 1, strings.Count(r, "the reason it failed"), "%s", r)
}
