//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/lib/api"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// digestToken is the admin token of the proxies these tests start.
const digestToken = e2eAdminToken

// digestProxy starts a proxy with its API (token digestToken) in front of m,
// with extra appended to the config (say, a [query-log] section).
func digestProxy(t *testing.T, m *testenv.MariaDB, extra string) (*testenv.Proxy, string) {
	t.Helper()
	apiAddr := testenv.FreeAddr(t)
	cfg := fmt.Sprintf("[proxy]\naddr = %q\n\n%s\n[log]\nlevel = \"info\"\n\n%s\n[[cluster]]\nname = \"main\"\ninstances = [%q]\n",
		testenv.FreeAddr(t), apiTOML(apiAddr), extra, m.Addr())
	return testenv.StartProxy(t, testenv.BuildProxy(t), cfg), "http://" + apiAddr
}

func getDigests(t *testing.T, base, query string) api.DigestList {
	t.Helper()
	resp, err := readClient.Get(base + "/api/v1/digests?" + query)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	var list api.DigestList
	require.NoError(t, json.Unmarshal(body, &list))
	return list
}

func findDigest(list api.DigestList, text string) *api.Digest {
	for i := range list.Digests {
		if list.Digests[i].DigestText == text {
			return &list.Digests[i]
		}
	}
	return nil
}

// TestDigestsCountWhatClientsRan runs known numbers of statements through the
// proxy from several clients at once (text protocol with varying literals,
// server-side prepared statements, failing statements, DML) and checks that
// the digest table counts exactly those, with their errors and rows.
func TestDigestsCountWhatClientsRan(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	p, base := digestProxy(t, m, "")
	setup := nativeDB(t, p.Addr)
	emptyTable(t, setup, "digest_t", "id INT PRIMARY KEY, c VARCHAR(20)")
	ctx := ctxT(t, 2*time.Minute)
	for i := 1; i <= 10; i++ {
		_, err := setup.ExecContext(ctx, "INSERT INTO digest_t VALUES (?, ?)", i, fmt.Sprint("row-", i))
		require.NoError(t, err)
	}
	require.NoError(t, setup.Close())
	// The set-up above is counted too; start from an empty table.
	req, _ := http.NewRequest(http.MethodDelete, base+"/api/v1/digests", nil)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "a reset needs the token")
	req.Header.Set("Authorization", "Bearer "+digestToken)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.Empty(t, getDigests(t, base, "cluster=main").Digests)

	const clients, each = 4, 25
	text := nativeDB(t, p.Addr, func(c *mysql.Config) error { c.InterpolateParams = true; return nil })
	prep := nativeDB(t, p.Addr) // go-sql-driver prepares statements with arguments on the server
	var wg sync.WaitGroup
	errs := make(chan error, clients*each*4)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				id := (c*each+i)%10 + 1
				var s string
				if err := text.QueryRowContext(ctx, "SELECT c FROM digest_t WHERE id = ?", id).Scan(&s); err != nil {
					errs <- err
				}
				if err := prep.QueryRowContext(ctx, "SELECT c FROM digest_t WHERE id = ? AND id > 0", id).Scan(&s); err != nil {
					errs <- err
				}
				if _, err := text.ExecContext(ctx, "SELECT * FROM digest_missing WHERE id = ?", id); mysqlErrCode(err) != 1146 {
					errs <- fmt.Errorf("want error 1146, got %v", err)
				}
				if _, err := text.ExecContext(ctx, "UPDATE digest_t SET c = ? WHERE id IN (?, ?)", "x", id, id%10+1); err != nil {
					errs <- err
				}
			}
		}(c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	n := uint64(clients * each)
	var list api.DigestList
	require.Eventually(t, func() bool {
		list = getDigests(t, base, "cluster=main&sort=count&limit=0")
		d := findDigest(list, "select `c` from `digest_t` where `id` = ?")
		return d != nil && d.Count == n
	}, 10*time.Second, 50*time.Millisecond, "digests: %+v", list)

	sel := findDigest(list, "select `c` from `digest_t` where `id` = ?")
	require.Equal(t, "main", sel.Cluster)
	require.Equal(t, testenv.NativeUser, sel.User)
	require.Equal(t, testenv.TestDatabase, sel.Schema)
	require.Zero(t, sel.Errors)
	require.Equal(t, n, sel.RowsSent, "one row per select")
	require.Regexp(t, `^SELECT c FROM digest_t WHERE id = \d+$`, sel.SampleText)
	require.Len(t, sel.Digest, 64)
	require.Positive(t, sel.TotalMs)
	require.LessOrEqual(t, sel.MinMs, sel.P50Ms)
	require.LessOrEqual(t, sel.P50Ms, sel.P99Ms)
	require.LessOrEqual(t, sel.P99Ms, sel.MaxMs)

	ps := findDigest(list, "select `c` from `digest_t` where `id` = ? and `id` > ?")
	require.NotNil(t, ps, "prepared executions count under their prepared text")
	require.Equal(t, n, ps.Count)
	require.Equal(t, n, ps.RowsSent)
	require.Equal(t, "SELECT c FROM digest_t WHERE id = ? AND id > 0", ps.SampleText)

	bad := findDigest(list, "select * from `digest_missing` where `id` = ?")
	require.NotNil(t, bad)
	require.Equal(t, n, bad.Count)
	require.Equal(t, n, bad.Errors)
	require.Equal(t, uint16(1146), bad.LastErrorCode)

	upd := findDigest(list, "update `digest_t` set `c` = ? where `id` in ( ... )")
	require.NotNil(t, upd)
	require.Equal(t, n, upd.Count)
	require.Zero(t, upd.RowsSent)
	require.Positive(t, upd.RowsAffected)

	// Sorting and limits.
	top := getDigests(t, base, "sort=errors&limit=1")
	require.Len(t, top.Digests, 1)
	require.Equal(t, bad.Digest, top.Digests[0].Digest)
	require.Equal(t, list.Total, top.Total)
	resp, err = readClient.Get(base + "/api/v1/digests?sort=bogus")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)

	// Prometheus totals: per cluster, never per digest.
	resp, err = http.Get(base + "/metrics")
	require.NoError(t, err)
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var stmts, errors float64
	for _, line := range strings.Split(string(metrics), "\n") {
		if strings.HasPrefix(line, "switchyard_statement") || strings.HasPrefix(line, "switchyard_digest") {
			require.NotContains(t, line, "digest=", "no digest label")
		}
		fmt.Sscanf(line, `switchyard_statements_total{cluster="main"} %g`, &stmts)
		fmt.Sscanf(line, `switchyard_statement_errors_total{cluster="main"} %g`, &errors)
	}
	require.GreaterOrEqual(t, stmts, float64(4*n), "the totals count every statement since start-up")
	require.GreaterOrEqual(t, errors, float64(n))

	// proxyctl top --once shows the same table.
	bin := buildProxyctl(t)
	res := ctl(t, bin, []string{"SWITCHYARD_API=" + base, "SWITCHYARD_TOKEN=" + e2eReadToken}, "top", "--once", "--sort", "count", "--limit", "0", "--width", "0")
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, "select `c` from `digest_t` where `id` = ? and `id` > ?")
	f := row(t, res.stdout, "main")
	require.Equal(t, []string{"main", testenv.NativeUser, testenv.TestDatabase}, f[:3])
	res = ctl(t, bin, []string{"SWITCHYARD_API=" + base, "SWITCHYARD_TOKEN=" + e2eReadToken}, "top", "reset")
	require.Equal(t, 1, res.code, "reset with the read token is refused")
	res = ctl(t, bin, []string{"SWITCHYARD_API=" + base, "SWITCHYARD_TOKEN=" + digestToken}, "top", "reset", "--cluster", "main")
	require.Equal(t, 0, res.code, res.stderr)
	require.Empty(t, getDigests(t, base, "").Digests)
}

// TestDigestsReload turns recording off with a reload: the table keeps what
// it has and stops counting, and says so.
func TestDigestsReload(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	p, base := digestProxy(t, m, "")
	db := nativeDB(t, p.Addr)
	for i := 0; i < 3; i++ {
		require.Equal(t, "1", queryString(t, db, "SELECT 1 AS reload_probe"))
	}
	count := func() uint64 {
		for _, d := range getDigests(t, base, "limit=0").Digests {
			if d.DigestText == "select ? as `reload_probe`" {
				return d.Count
			}
		}
		return 0
	}
	require.Equal(t, uint64(3), count())
	var cs api.ConfigStatus
	require.NoError(t, getAPI(strings.TrimPrefix(base, "http://"), "/api/v1/config/status", &cs))
	require.NoError(t, p.WriteConfig(configOf(t, p)+"\n[digests]\nenabled = false\n"))
	require.Eventually(t, func() bool {
		var now api.ConfigStatus
		return getAPI(strings.TrimPrefix(base, "http://"), "/api/v1/config/status", &now) == nil &&
			now.Checksum != cs.Checksum && now.LastResult == "ok"
	}, 30*time.Second, 50*time.Millisecond, "the file change was never applied")
	for i := 0; i < 3; i++ {
		require.Equal(t, "1", queryString(t, db, "SELECT 1 AS reload_probe"))
	}
	list := getDigests(t, base, "")
	require.False(t, list.Enabled)
	require.Equal(t, uint64(3), count(), "nothing recorded while off, nothing lost")
}
