package testenv

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FailureTailLines is how many last lines of each log a failed test prints.
const FailureTailLines = 80

// KeepLogDirEnv names a directory where the logs of failed tests are copied
// (one subdirectory per test); the copies outlive the test's temporary
// directory, which Go removes even after a failure. Unset: the system
// temporary directory's switchyard-e2e-logs.
const KeepLogDirEnv = "SWITCHYARD_E2E_LOG_DIR"

// OnFailureShowLog makes a failed test print the last FailureTailLines
// lines that path got from offset on (the part written during the test,
// for a server shared by several tests), and keep a copy of the whole file
// in the directory KeepLogDirEnv names. label says whose log it is
// ("proxy", "mariadbd 127.0.0.1:3306", "etcd"). Register it after the
// process has started: cleanups run in reverse, so it runs while the log
// still exists and before the test's temporary directory is removed.
func OnFailureShowLog(t testing.TB, label, path string, offset int64) {
	t.Helper()
	t.Cleanup(func() { showLogIfFailed(t, label, path, offset) })
}

// showLogIfFailed is OnFailureShowLog's work, for cleanups that must order
// it themselves (after killing the process, say).
func showLogIfFailed(t testing.TB, label, path string, offset int64) {
	if !t.Failed() {
		return
	}
	kept := keepLog(t.Name(), label, path)
	text := readFrom(path, offset)
	t.Logf("--- last %d lines of the %s log %s (during this test; whole file kept at %s) ---\n%s",
		FailureTailLines, label, path, kept, TailLines(text, FailureTailLines))
}

// keepLog copies path into the failed test's directory under the keep
// directory and returns the copy's path (or why there is none).
func keepLog(test, label, path string) string {
	root := os.Getenv(KeepLogDirEnv)
	if root == "" {
		root = filepath.Join(os.TempDir(), "switchyard-e2e-logs")
	}
	dir := filepath.Join(root, sanitize(test))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "nowhere: " + err.Error()
	}
	dst := filepath.Join(dir, sanitize(label)+"-"+filepath.Base(path))
	src, err := os.Open(path)
	if err != nil {
		return "nowhere: " + err.Error()
	}
	defer src.Close()
	out, err := os.Create(dst)
	if err != nil {
		return "nowhere: " + err.Error()
	}
	defer out.Close()
	if _, err := io.Copy(out, src); err != nil {
		return fmt.Sprintf("%s (incomplete: %v)", dst, err)
	}
	return dst
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}
