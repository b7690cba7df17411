//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/lib/api"
	"github.com/switchyard-db/switchyard/pkg/shadow"
	"github.com/switchyard-db/switchyard/test/testenv"
)

func shadowConfig(proxyAddr, apiAddr, source, target, shadowBlock string) string {
	return fmt.Sprintf("[proxy]\naddr = %q\ndefault-cluster = \"main\"\n\n%s\n[log]\nlevel = \"info\"\n\n"+
		"[[cluster]]\nname = \"main\"\ninstances = [%q]\n\n[[cluster]]\nname = \"canary\"\ninstances = [%q]\n\n%s",
		proxyAddr, apiTOML(apiAddr), source, target, shadowBlock)
}

func shadowBlock(extra string) string {
	return fmt.Sprintf("[[shadow]]\nname = \"canary-check\"\nsource = \"main\"\ntarget = \"canary\"\nsample = 1.0\n"+
		"user = %q\npassword = %q\n%s", testenv.NativeUser, testenv.NativePassword, extra)
}

func getShadows(t *testing.T, base string) []shadow.Status {
	t.Helper()
	resp, err := readClient.Get(base + "/api/v1/shadow")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.NotContains(t, string(body), testenv.NativePassword, "the mirror's password never reaches the API")
	var list api.ShadowList
	require.NoError(t, json.Unmarshal(body, &list))
	return list.Shadows
}

func oneShadow(t *testing.T, base string) shadow.Status {
	t.Helper()
	all := getShadows(t, base)
	require.Len(t, all, 1)
	return all[0]
}

// TestShadowing runs two MariaDB clusters with the same data behind one
// proxy and mirrors every SELECT of "main" to "canary": no mismatch on
// identical data; after one row changes on canary, mismatches for exactly
// the digest that reads it; with canary frozen and a queue of one,
// statements are dropped and counted while clients keep being served; with
// canary killed, clients see no error and the error counter rises; a reload
// that removes the section stops it.
func TestShadowing(t *testing.T) {
	src := testenv.StartMariaDB(t, testenv.MariaDBOptions{})
	dst := testenv.StartMariaDB(t, testenv.MariaDBOptions{})
	for _, m := range []*testenv.MariaDB{src, dst} {
		db := nativeDB(t, m.Addr())
		emptyTable(t, db, "shadow_t", "id INT PRIMARY KEY, g INT, c VARCHAR(40)")
		for i := 1; i <= 20; i++ {
			_, err := db.Exec("INSERT INTO shadow_t VALUES (?, ?, ?)", i, i%4, fmt.Sprint("row-", i))
			require.NoError(t, err)
		}
	}
	apiAddr := testenv.FreeAddr(t)
	proxyAddr := testenv.FreeAddr(t)
	base := "http://" + apiAddr
	p := testenv.StartProxy(t, testenv.BuildProxy(t), shadowConfig(proxyAddr, apiAddr, src.Addr(), dst.Addr(), shadowBlock("")))
	client := nativeDB(t, p.Addr, func(c *mysql.Config) error { c.InterpolateParams = true; return nil })
	ctx := ctxT(t, 5*time.Minute)

	// run issues the workload and fails on any client error.
	run := func(rounds int) {
		t.Helper()
		for r := 0; r < rounds; r++ {
			for id := 1; id <= 20; id++ {
				var c string
				require.NoError(t, client.QueryRowContext(ctx, "SELECT c FROM shadow_t WHERE id = ?", id).Scan(&c))
			}
			var n int
			require.NoError(t, client.QueryRowContext(ctx, "SELECT COUNT(*) FROM shadow_t WHERE g = ?", r%4).Scan(&n))
			_, err := client.ExecContext(ctx, "SELECT * FROM no_such_table")
			require.EqualValues(t, 1146, mysqlErrCode(err))
			// Not mirrored: writes, locking reads (skipped), transactions.
			_, err = client.ExecContext(ctx, "UPDATE shadow_t SET g = g WHERE id = 1")
			require.NoError(t, err)
			_, err = client.ExecContext(ctx, "SELECT c FROM shadow_t WHERE id = 1 FOR UPDATE")
			require.NoError(t, err)
		}
	}
	const (
		byID    = "select `c` from `shadow_t` where `id` = ?"
		missing = "select * from `no_such_table`"
	)
	digests := func(st shadow.Status) map[string]shadow.DigestStatus {
		out := map[string]shadow.DigestStatus{}
		for _, d := range st.Digests {
			out[d.DigestText] = d
		}
		return out
	}

	run(5) // 5 x (20 + 1 + 1 + 1 locking) SELECTs
	require.Eventually(t, func() bool {
		st := oneShadow(t, base)
		return st.Compared+st.Skipped == st.Sampled && st.Sampled == 115
	},
		time.Minute, 50*time.Millisecond, "%+v", oneShadow(t, base))
	st := oneShadow(t, base)
	require.EqualValues(t, 110, st.Compared)
	require.EqualValues(t, 5, st.Skipped, "FOR UPDATE is not mirrored")
	require.Zero(t, st.Mismatches, "identical data: %+v", st.Digests)
	require.Zero(t, st.Dropped)
	require.Zero(t, st.Errors)
	d := digests(st)
	require.EqualValues(t, 100, d[byID].Compared)
	require.EqualValues(t, 5, d[missing].Compared, "an error both sides return is a match")
	require.Positive(t, d[byID].TargetAvgMs)

	// One row changes on canary only.
	_, err := nativeDB(t, dst.Addr()).Exec("UPDATE shadow_t SET c = 'changed' WHERE id = 7")
	require.NoError(t, err)
	run(3)
	require.Eventually(t, func() bool { return oneShadow(t, base).Compared == 110+66 }, time.Minute, 50*time.Millisecond)
	st = oneShadow(t, base)
	require.EqualValues(t, 3, st.Mismatches)
	d = digests(st)
	require.EqualValues(t, 3, d[byID].Mismatches)
	require.EqualValues(t, 3, d[byID].RowMismatches)
	require.Contains(t, d[byID].Example, "7")
	for text, row := range d {
		if text != byID {
			require.Zero(t, row.Mismatches, "only the digest that reads the changed row: %s", text)
		}
	}
	require.Equal(t, byID, st.Digests[0].DigestText, "mismatching digests come first")

	bin := buildProxyctl(t)
	res := ctl(t, bin, []string{"SWITCHYARD_API=" + base, "SWITCHYARD_TOKEN=" + e2eReadToken}, "shadow")
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, "canary-check")
	require.Contains(t, res.stdout, byID)

	metrics := scrapeMetrics(t, base)
	require.Contains(t, metrics, `switchyard_shadow_mismatches_total{shadow="canary-check",source="main",target="canary"} 3`)
	require.NotRegexp(t, regexp.MustCompile(`switchyard_shadow_[a-z_]+\{[^}]*digest`), metrics)

	// Canary frozen (SIGSTOP): its connections hang; with one connection and
	// a queue of one, almost everything is dropped, and clients are served
	// as before. The reload keeps the counters (same name, source, target).
	cfg := shadowConfig(proxyAddr, apiAddr, src.Addr(), dst.Addr(), shadowBlock("queue = 1\nconnections = 1\ntimeout = \"1m\"\n"))
	require.NoError(t, p.WriteConfig(cfg))
	require.NoError(t, p.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return oneShadow(t, base).QueueSize == 1 }, 30*time.Second, 50*time.Millisecond)
	require.EqualValues(t, 3, oneShadow(t, base).Mismatches, "counters survive the reload")
	require.NoError(t, testenv.Freeze(dst.Pid()))
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = syscall.Kill(dst.Pid(), syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	before := oneShadow(t, base)
	start := time.Now()
	run(5)
	t.Logf("115 statements with the target frozen took %s", time.Since(start))
	st = oneShadow(t, base)
	require.Greater(t, st.Dropped, before.Dropped+50, "a full queue drops: %+v", st)
	require.Contains(t, scrapeMetrics(t, base), `switchyard_shadow_dropped_total{shadow="canary-check",source="main",target="canary"}`)
	resume()

	// Canary killed: no client error, the error counter rises.
	dst.Kill()
	before = oneShadow(t, base)
	run(5)
	require.Eventually(t, func() bool { return oneShadow(t, base).Errors > before.Errors }, time.Minute, 50*time.Millisecond)
	require.NotEmpty(t, oneShadow(t, base).LastError)

	// A reload without the section stops it.
	require.NoError(t, p.WriteConfig(shadowConfig(proxyAddr, apiAddr, src.Addr(), dst.Addr(), "")))
	require.NoError(t, p.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return len(getShadows(t, base)) == 0 }, 30*time.Second, 50*time.Millisecond)
	run(1)
	require.NotContains(t, p.LogContents(), testenv.NativePassword, "the mirror's password is never logged")
}

func scrapeMetrics(t *testing.T, base string) string {
	t.Helper()
	resp, err := readClient.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return string(body)
}
