package testenv

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// MariaDBOptions tunes StartMariaDB. The zero value is a plain-text server with 1000 connections.
type MariaDBOptions struct {
	// TLS enables ssl-cert/ssl-key/ssl-ca with certificates from NewCerts (or Certs when set).
	TLS bool
	// Certs supplies the certificates and implies TLS; nil generates new ones when TLS is set.
	Certs *Certs
	// MaxConnections is max_connections; 0 means 1000.
	MaxConnections int
	// ExtraArgs are appended to the mariadbd command line, e.g. "--wait-timeout=5".
	ExtraArgs []string
	// StartTimeout bounds install plus start-up; 0 means 60s.
	StartTimeout time.Duration
	// OwnProcessGroup starts mariadbd in a process group of its own, so that a terminal's
	// Ctrl-C (SIGINT to the whole foreground group) reaches only the program that launched
	// it, which then stops its servers in its own order (see LaunchMariaDB).
	OwnProcessGroup bool
}

// MariaDB is a throwaway mariadbd listening on 127.0.0.1:Port and on Socket, with the test
// users from users.go already created.
type MariaDB struct {
	Port    int
	Socket  string
	Dir     string // holds data/, the logs, the pid file and (with TLS) certs/
	DataDir string
	LogPath string // mariadbd stdout and stderr (its error log)
	Certs   *Certs // nil without TLS
	// Ed25519Err is why the ed user could not be created (plugin missing, ...); nil when it
	// exists. Tests that need it call RequireEd25519 so the reason is reported, not skipped.
	Ed25519Err error
	// StartupTime is how long install, start and user setup took.
	StartupTime time.Duration

	bins    MariaDBBinaries
	opts    MariaDBOptions
	sockDir string // separate short directory for Socket when Dir is too long for sun_path

	mu   sync.Mutex
	proc *process
}

const (
	defaultMaxConnections = 1000
	defaultStartTimeout   = 60 * time.Second
	stopGrace             = 60 * time.Second
	bindAttempts          = 5
	// sun_path holds 108 bytes on Linux and 104 on the BSDs; stay under both.
	maxSocketPath = 100
)

var errBindFailed = errors.New("mariadbd could not bind its port")

// StartMariaDB installs a fresh data directory under t.TempDir(), starts mariadbd on a free
// port, waits until it accepts connections and creates the test database and users. The server
// is killed and its files removed when the test ends. Any failure is fatal and quotes the tail
// of the server log.
func StartMariaDB(t testing.TB, opts MariaDBOptions) *MariaDB {
	t.Helper()
	dir := t.TempDir()
	m, err := startMariaDB(dir, opts)
	if err != nil {
		t.Fatalf("testenv: start MariaDB: %v", err)
	}
	t.Cleanup(m.close)
	OnFailureShowLog(t, "mariadbd "+m.Addr(), m.LogPath, 0)
	return m
}

// startMariaDB does the work of StartMariaDB without a testing.TB so a process-wide server can
// use it too. On error nothing is left running.
func startMariaDB(dir string, opts MariaDBOptions) (*MariaDB, error) {
	began := time.Now()
	if opts.MaxConnections == 0 {
		opts.MaxConnections = defaultMaxConnections
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = defaultStartTimeout
	}
	deadline := began.Add(opts.StartTimeout)
	bins, err := LookupMariaDB()
	if err != nil {
		return nil, err
	}
	m := &MariaDB{
		Dir:     dir,
		DataDir: filepath.Join(dir, "data"),
		LogPath: filepath.Join(dir, "mariadbd.log"),
		Socket:  filepath.Join(dir, "mariadbd.sock"),
		Certs:   opts.Certs,
		bins:    bins,
		opts:    opts,
	}
	if len(m.Socket) > maxSocketPath {
		if m.sockDir, err = os.MkdirTemp("/tmp", "sy-sock-"); err != nil {
			return nil, err
		}
		m.Socket = filepath.Join(m.sockDir, "mariadbd.sock")
	}
	if err := m.prepare(deadline); err != nil {
		m.close()
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		if m.Port, err = freePort(); err != nil {
			m.close()
			return nil, err
		}
		err = m.launch(deadline)
		if err == nil {
			break
		}
		if !errors.Is(err, errBindFailed) || attempt == bindAttempts {
			m.close()
			return nil, err
		}
	}
	if err := m.createUsers(deadline); err != nil {
		m.close()
		return nil, fmt.Errorf("create test users: %w%s", err, m.logTailForError())
	}
	m.StartupTime = time.Since(began)
	return m, nil
}

// prepare writes certificates and the system tables.
func (m *MariaDB) prepare(deadline time.Time) error {
	if m.opts.TLS && m.Certs == nil {
		c, err := generateCerts(filepath.Join(m.Dir, "certs"))
		if err != nil {
			return fmt.Errorf("certificates: %w", err)
		}
		m.Certs = c
	}
	if err := os.MkdirAll(filepath.Join(m.Dir, "tmp"), 0o700); err != nil {
		return err
	}
	return populateDataDir(m.bins.InstallDB, m.Dir, m.DataDir, deadline)
}

// launch starts mariadbd on m.Port and waits until it accepts connections on its socket.
func (m *MariaDB) launch(deadline time.Time) error {
	logStart := fileSize(m.LogPath)
	attr := childProcAttr()
	if m.opts.OwnProcessGroup {
		attr = ownGroupProcAttr()
	}
	proc, err := startProcessAttr(m.LogPath, attr, m.bins.Server, m.serverArgs()...)
	if err != nil {
		return err
	}
	if err := waitAcceptingSocket(m.Socket, proc, deadline); err != nil {
		proc.kill()
		if isBindFailure(readFrom(m.LogPath, logStart)) {
			return fmt.Errorf("%w: port %d: %v%s", errBindFailed, m.Port, err, m.logTailForError())
		}
		return fmt.Errorf("%w%s", err, m.logTailForError())
	}
	m.mu.Lock()
	m.proc = proc
	m.mu.Unlock()
	return nil
}

func (m *MariaDB) serverArgs() []string {
	args := []string{
		"--no-defaults", // must come first
		"--datadir=" + m.DataDir,
		"--bind-address=127.0.0.1",
		"--port=" + strconv.Itoa(m.Port),
		"--socket=" + m.Socket,
		"--pid-file=" + filepath.Join(m.Dir, "mariadbd.pid"),
		"--tmpdir=" + filepath.Join(m.Dir, "tmp"),
		"--skip-name-resolve",
		"--max-allowed-packet=1G",
		"--max-connections=" + strconv.Itoa(m.opts.MaxConnections),
		// The listen queue holds a burst of max_connections connects and
		// more. The default (80 + max_connections/5) overflows when a client
		// opens them all at once, as go-sql-driver's TestConcurrent does:
		// the kernel then drops handshakes, and clients, direct or the
		// proxy, read resets (4 runs of 6 failed so, directly).
		"--back-log=" + strconv.Itoa(m.opts.MaxConnections*3/2),
		"--innodb-buffer-pool-size=32M",
		"--innodb-log-file-size=" + innodbLogFileSize,
		// Commits reach the OS cache, so Kill (SIGKILL of the process) loses nothing.
		"--innodb-flush-log-at-trx-commit=2",
		"--skip-log-bin",
		"--performance-schema=OFF",
		"--local-infile=1",
		"--character-set-server=utf8mb4",
		"--collation-server=utf8mb4_general_ci",
	}
	if os.Geteuid() == 0 {
		// mariadbd refuses to run as root unless told to.
		args = append(args, "--user=root")
	}
	if m.Certs != nil {
		args = append(args,
			"--ssl-cert="+m.Certs.ServerCert,
			"--ssl-key="+m.Certs.ServerKey,
			"--ssl-ca="+m.Certs.CAFile)
	}
	return append(args, m.opts.ExtraArgs...)
}

// Addr is "127.0.0.1:<Port>".
func (m *MariaDB) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(m.Port)) }

// Pid is the pid of the current (or last) mariadbd process.
func (m *MariaDB) Pid() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proc.pid()
}

// Exited is closed when the current mariadbd process has exited.
func (m *MariaDB) Exited() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proc.done
}

// Kill sends SIGKILL and waits until the process is gone: its port refuses connections at once
// and the next start runs crash recovery.
func (m *MariaDB) Kill() {
	m.mu.Lock()
	proc := m.proc
	m.mu.Unlock()
	proc.kill()
}

// Stop sends SIGTERM and waits for a clean shutdown (SIGKILL after a minute). It returns the
// exit error, if any.
func (m *MariaDB) Stop() error {
	m.mu.Lock()
	proc := m.proc
	m.mu.Unlock()
	return proc.stop(stopGrace)
}

// Restart starts mariadbd again on the same data directory, port and socket after Stop or
// Kill. Users and data survive. It fails if another process took the port meanwhile.
func (m *MariaDB) Restart() error {
	m.mu.Lock()
	running := !m.proc.exited()
	m.mu.Unlock()
	if running {
		return errors.New("testenv: Restart of a running mariadbd; Stop or Kill it first")
	}
	return m.launch(time.Now().Add(m.opts.StartTimeout))
}

// LogTail returns the last n lines of the server log.
func (m *MariaDB) LogTail(n int) string { return TailLines(readFrom(m.LogPath, 0), n) }

// close kills the server and removes files outside Dir; Dir itself belongs to the caller.
func (m *MariaDB) close() {
	m.mu.Lock()
	proc := m.proc
	m.mu.Unlock()
	if proc != nil {
		proc.kill()
	}
	if m.sockDir != "" {
		_ = os.RemoveAll(m.sockDir)
	}
}

func (m *MariaDB) logTailForError() string {
	return fmt.Sprintf("\n--- last lines of %s ---\n%s", m.LogPath, m.LogTail(40))
}

func isBindFailure(log string) bool {
	return strings.Contains(log, "Bind on TCP/IP port") ||
		strings.Contains(log, "Address already in use") ||
		strings.Contains(log, "another server running on port")
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readFrom returns the file's content from offset on, or "" if it cannot be read.
func readFrom(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// TailLines returns the last n lines of s.
func TailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
