package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// Client test suites as the measure of protocol completeness: a suite's test
// that passes against MariaDB directly must pass through the proxy too. Each
// suite runs twice against the same fresh MariaDB, directly and through the
// proxy, and the per-test results are compared; the comparison is logged and
// written to $SWITCHYARD_SUITE_REPORT_DIR when set.

// suiteResult is one test's outcome and the tail of its output.
type suiteResult struct {
	pass bool
	out  string
}

// compareSuites fails t for every test that passed directly and not through
// the proxy, and reports the whole comparison.
func compareSuites(t *testing.T, suite string, direct, proxied map[string]suiteResult) {
	t.Helper()
	names := make([]string, 0, len(direct))
	for n := range direct {
		names = append(names, n)
	}
	sort.Strings(names)
	var report strings.Builder
	var regressions []string
	passDirect, passProxied := 0, 0
	for _, n := range names {
		d, p := direct[n], proxied[n]
		if d.pass {
			passDirect++
		}
		if p.pass {
			passProxied++
		}
		status := map[bool]string{true: "pass", false: "FAIL"}
		fmt.Fprintf(&report, "%-45s direct=%s proxy=%s", n, status[d.pass], status[p.pass])
		if !d.pass {
			fmt.Fprintf(&report, "  (directly: %.120s)", failureLine(d.out))
		}
		report.WriteByte('\n')
		if d.pass && !p.pass {
			regressions = append(regressions, n)
		}
	}
	fmt.Fprintf(&report, "%s: %d tests, %d pass directly, %d pass through the proxy, %d pass directly but not through it\n",
		suite, len(names), passDirect, passProxied, len(regressions))
	t.Log("\n" + report.String())
	if dir := os.Getenv("SWITCHYARD_SUITE_REPORT_DIR"); dir != "" {
		_ = os.WriteFile(filepath.Join(dir, suite+".txt"), []byte(report.String()), 0o644)
	}
	for _, n := range regressions {
		t.Errorf("%s: %s passes directly but fails through the proxy:\n%s", suite, n, proxied[n].out)
	}
}

// suiteProxy starts a proxy in front of m and waits until its greeting is
// MariaDB's (the prober has read the backend), as clients see it in production.
func suiteProxy(t *testing.T, m *testenv.MariaDB) string {
	t.Helper()
	p := startProxy(t, proxyConfig{backends: []string{m.Addr()}, extra: "\n[health-check]\ninterval = \"200ms\"\n"})
	require.Eventually(t, func() bool {
		c, err := dialRaw(t, p.Addr, testenv.NativeUser, testenv.NativePassword, "")
		return err == nil && strings.Contains(c.hs.ServerVersion, "MariaDB")
	}, time.Minute, 100*time.Millisecond, "the proxy never greeted with the backend's version")
	return p.Addr
}

// TestMariaDBClientTestSuite runs MariaDB's C API test program
// (mariadb-client-test, Debian package mariadb-test) one test per process,
// directly and through the proxy. CI runs clientTestSubset; with
// SWITCHYARD_CLIENT_TEST_FULL=1 every test runs (docs/protocol-compat.md has
// the full run's results); SWITCHYARD_CLIENT_TESTS=a,b runs the named ones.
func TestMariaDBClientTestSuite(t *testing.T) {
	bin, err := exec.LookPath("mariadb-client-test")
	require.NoError(t, err, "mariadb-client-test is in Debian's mariadb-test package (scripts/install-deps.sh)")
	m := testenv.StartMariaDB(t, testenv.MariaDBOptions{})
	names := clientTestSubset
	if os.Getenv("SWITCHYARD_CLIENT_TEST_FULL") == "1" {
		names = listClientTests(t, bin)
	}
	if only := os.Getenv("SWITCHYARD_CLIENT_TESTS"); only != "" {
		names = strings.Split(only, ",") // for a closer look at some tests
	}
	proxyAddr := suiteProxy(t, m)
	vardir := t.TempDir()
	run := func(addr string) map[string]suiteResult {
		res := map[string]suiteResult{}
		for _, n := range names {
			res[n] = runClientTest(t, bin, addr, vardir, n)
		}
		return res
	}
	direct := run(m.Addr())
	proxied := run(proxyAddr)
	compareSuites(t, "mariadb-client-test", direct, proxied)
}

// clientTestSubset is what CI runs of mariadb-client-test: the protocol
// extensions this proxy forwards (bulk operations with RETURNING, replace,
// delete and auto-increment; progress reports), KILL of one's own
// connection with reconnect, prepared statements, cursors and long data,
// and a sample of the rest; all pass directly against Debian's MariaDB
// 10.11. (test_cache_metadata fails there directly, so it measures
// nothing.) The full list takes about seven minutes for both runs.
var clientTestSubset = []string{
	"test_bulk_autoinc", "test_bulk_delete", "test_bulk_replace", "test_bulk_insert_returning",
	"test_bulk_delete_returning", "test_progress_reporting", "test_bug17512527", "test_opt_reconnect",
	"test_basic_cursors", "test_fetch_nobuffs", "test_open_cursor_prepared_statement_query_cache",
	"test_change_user", "test_long_data", "test_long_data_bin", "test_multi_statements",
	"test_prepare_multi_statements", "test_multi_stmt", "test_nstmts", "test_stmt_close",
	"test_prepare_simple", "test_prepare", "test_select_prepare",
	"test_mdev_26145", "test_explain_meta", "test_field_flags", "test_wl4166_1", "test_bug36004",
}

func listClientTests(t *testing.T, bin string) []string {
	out, err := exec.Command(bin, "-T").CombinedOutput()
	require.NoError(t, err, string(out))
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "test_") {
			names = append(names, l)
		}
	}
	require.NotEmpty(t, names)
	return names
}

// runClientTest runs one mariadb-client-test test; the program aborts on
// the first failed check, so one test per process gives per-test results.
func runClientTest(t *testing.T, bin, addr, vardir, name string) suiteResult {
	host, port := splitPort(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--no-defaults", "--host="+host, "--port="+port,
		"--user="+testenv.AdminUser, "--password="+testenv.AdminPassword, "--vardir="+vardir, "--silent", name)
	out, err := cmd.CombinedOutput()
	return suiteResult{pass: err == nil, out: tail(string(out), 15)}
}

// failureLine picks the line of a test's output that says what failed.
func failureLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines {
		if strings.Contains(l, "check failed") || strings.Contains(l, "Error") || strings.Contains(l, "_test.go:") {
			return strings.TrimSpace(l)
		}
	}
	return strings.TrimSpace(lines[len(lines)-1])
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestGoSQLDriverSuite runs go-sql-driver/mysql's own test suite (the module
// is a dependency) directly against a MariaDB and through the proxy.
func TestGoSQLDriverSuite(t *testing.T) {
	root, err := testenv.ModuleRoot()
	require.NoError(t, err)
	testBin := filepath.Join(t.TempDir(), "driver.test")
	build := exec.Command("go", "test", "-c", "-o", testBin, "github.com/go-sql-driver/mysql")
	build.Dir = root
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))

	m := testenv.StartMariaDB(t, testenv.MariaDBOptions{})
	_, err = m.RootDB(t).ExecContext(ctxT(t, 30*time.Second), "CREATE DATABASE IF NOT EXISTS gotest")
	require.NoError(t, err)
	proxyAddr := suiteProxy(t, m)
	direct := runDriverSuite(t, testBin, m.Addr())
	proxied := runDriverSuite(t, testBin, proxyAddr)
	require.NotEmpty(t, direct)
	compareSuites(t, "go-sql-driver", direct, proxied)
}

var goTestResult = regexp.MustCompile(`^--- (PASS|FAIL|SKIP): (\S+)`)

// runDriverSuite runs the driver's compiled tests against addr and returns
// the top-level tests' results (a skipped test counts as not passing).
func runDriverSuite(t *testing.T, testBin, addr string) map[string]suiteResult {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// TestConnectorReturnsTimeout dials 1.1.1.1 to provoke a timeout: the
	// tests send no traffic off loopback, so it is left out (on both sides).
	cmd := exec.CommandContext(ctx, testBin, "-test.v", "-test.count=1", "-test.timeout=4m",
		"-test.skip", "^TestConnectorReturnsTimeout$")
	cmd.Env = append(os.Environ(), "MYSQL_TEST_USER="+testenv.AdminUser, "MYSQL_TEST_PASS="+testenv.AdminPassword,
		"MYSQL_TEST_PROT=tcp", "MYSQL_TEST_ADDR="+addr, "MYSQL_TEST_DBNAME=gotest", "MYSQL_TEST_CONCURRENT=1")
	out, _ := cmd.CombinedOutput()
	if dir := os.Getenv("SWITCHYARD_SUITE_REPORT_DIR"); dir != "" {
		_ = os.WriteFile(filepath.Join(dir, "go-sql-driver-"+strings.ReplaceAll(addr, ":", "_")+".log"), out, 0o644)
	}
	res := map[string]suiteResult{}
	var last []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		last = append(last, line)
		if len(last) > 30 {
			last = last[1:]
		}
		if m := goTestResult.FindStringSubmatch(line); m != nil {
			res[m[2]] = suiteResult{pass: m[1] == "PASS", out: strings.Join(last, "\n")}
		}
	}
	return res
}

var _ = mysql.ComQuery
