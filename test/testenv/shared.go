package testenv

import (
	"os"
	"sync"
	"testing"
)

// SharedOptions configures the MariaDB that SharedMariaDB starts: TLS on, so one server covers
// both plain and TLS tests.
var SharedOptions = MariaDBOptions{TLS: true}

var shared struct {
	once sync.Once
	db   *MariaDB
	dir  string
	err  error

	mu       sync.Mutex
	teardown []func() // process-wide cleanups, run by Teardown in reverse order
}

// SharedMariaDB returns one MariaDB for the whole test binary, started on first use; starting
// costs about a second, so tests that only read and write their own tables should share it.
// Tests must not Kill, Stop or reconfigure it (use StartMariaDB for that), and should use their
// own table or database names. It lives until Teardown, so a package using it must run its
// tests through Wrap:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(testenv.Wrap(m)) }
func SharedMariaDB(t testing.TB) *MariaDB {
	t.Helper()
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "switchyard-mariadb-")
		if shared.err != nil {
			return
		}
		shared.db, shared.err = startMariaDB(shared.dir, SharedOptions)
		onTeardown(func() {
			if shared.db != nil {
				shared.db.close()
			}
			_ = os.RemoveAll(shared.dir)
		})
	})
	if shared.err != nil {
		t.Fatalf("testenv: start shared MariaDB: %v", shared.err)
	}
	// A failed test shows what the shared server logged while it ran.
	OnFailureShowLog(t, "shared mariadbd "+shared.db.Addr(), shared.db.LogPath, fileSize(shared.db.LogPath))
	return shared.db
}

// onTeardown registers a process-wide cleanup.
func onTeardown(f func()) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	shared.teardown = append(shared.teardown, f)
}

// Teardown stops the shared MariaDB and removes the built proxy binary and the data directory
// template. It is idempotent.
// Call it after m.Run, or let Wrap do it.
func Teardown() {
	shared.mu.Lock()
	fs := shared.teardown
	shared.teardown = nil
	shared.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// Runner is what TestMain runs: *testing.M, and what goleak.VerifyTestMain accepts.
type Runner interface{ Run() int }

type teardownRunner struct{ m Runner }

func (r teardownRunner) Run() int {
	wrapActive.Store(true)
	defer wrapActive.Store(false)
	defer Teardown()
	return r.m.Run()
}

// Wrap returns a Runner that runs m and then Teardown, so process-wide servers are gone before
// goleak looks for leftover goroutines. Inside it StartMariaDB also copies a once-installed data
// directory instead of running mariadb-install-db each time.
func Wrap(m Runner) Runner { return teardownRunner{m: m} }
