package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/go-sql-driver/mysql"
)

// innodbLogFileSize is passed to both the installer and the server: the installer's default
// (96M) would cost a 96 MB file per test, and a mismatch makes mariadbd resize it at start.
const innodbLogFileSize = "8M"

// installDataDir runs mariadb-install-db. "normal" root authentication gives root@localhost an
// empty password so the readiness probe and user setup can log in over the socket.
func installDataDir(installDB, dir, dataDir string, deadline time.Time) error {
	// The bootstrap's temporary tables are named after its pid; in a shared /tmp, an installer
	// in another pid namespace can hold the same name, which aborts the install.
	tmpDir := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmpDir, 0o700); err != nil {
		return err
	}
	args := []string{
		"--no-defaults", // must come first
		"--datadir=" + dataDir,
		"--tmpdir=" + tmpDir,
		"--auth-root-authentication-method=normal",
		"--skip-test-db",
		"--skip-name-resolve",
		"--innodb-log-file-size=" + innodbLogFileSize,
	}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, installDB, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	logPath := filepath.Join(dir, "install.log")
	_ = os.WriteFile(logPath, out, 0o644)
	if err != nil {
		return fmt.Errorf("%s: %w\n--- last lines of %s ---\n%s", installDB, err, logPath, TailLines(string(out), 40))
	}
	return nil
}

// rootSocketConfig logs in as the passwordless root over the unix socket.
func rootSocketConfig(socket string) *mysql.Config {
	cfg := mysql.NewConfig()
	cfg.User = "root"
	cfg.Net = "unix"
	cfg.Addr = socket
	cfg.Timeout = 5 * time.Second
	return cfg
}

type discardLogger struct{}

func (discardLogger) Print(...any) {}

// waitAcceptingSocket polls a full MySQL login over the socket until it succeeds, the process
// exits or the deadline passes. A login, not a connect, because the socket appears before the
// grant tables are loaded.
func waitAcceptingSocket(socket string, proc *process, deadline time.Time) error {
	cfg := rootSocketConfig(socket)
	cfg.Timeout = time.Second
	cfg.Logger = discardLogger{} // half-started servers make the driver log noise
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	var lastErr error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := connector.Connect(ctx)
		cancel()
		if err == nil {
			return conn.Close()
		}
		lastErr = err
		if time.Now().After(deadline) {
			return fmt.Errorf("mariadbd (pid %d) accepted no login on %s before the deadline: %w", proc.pid(), socket, lastErr)
		}
		select {
		case <-proc.done:
			return fmt.Errorf("mariadbd (pid %d) exited during start-up: %v", proc.pid(), proc.err)
		case <-time.After(25 * time.Millisecond):
		}
	}
}
