package testenv

import (
	"fmt"
	"os"
	"path/filepath"
)

// LaunchMariaDB starts a MariaDB exactly as StartMariaDB does (fresh system tables, a free
// port, the test users), but for a program rather than a test: nothing is tied to a testing.TB,
// the files live in dir (created when missing and never removed), and the caller owns the
// server and must Close it. On error nothing is left running.
func LaunchMariaDB(dir string, opts MariaDBOptions) (*MariaDB, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("testenv: MariaDB directory: %w", err)
	}
	return startMariaDB(abs, opts)
}

// Close stops the server cleanly (SIGTERM, then SIGKILL after a minute) and removes the files
// it kept outside Dir; Dir itself is the caller's. It returns the server's exit error, if any.
// It may be called again, and after Stop or Kill.
func (m *MariaDB) Close() error {
	err := m.Stop()
	m.close()
	return err
}
