//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/lib/api"
	"github.com/switchyard-db/switchyard/pkg/traffic"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// TestTrafficReplay captures three sessions' reads, writes, prepared
// statements and a failing statement through the proxy, replays the file
// against MariaDB read-only and in full (no mismatch), then changes one row
// and replays again: exactly the digest whose result changed is reported.
func TestTrafficReplay(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	dir := t.TempDir()
	p, base := digestProxy(t, m, fmt.Sprintf("[traffic]\ncapture-dir = %q\n", dir))
	bin := buildProxyctl(t)
	withToken := []string{"SWITCHYARD_API=" + base, "SWITCHYARD_TOKEN=" + digestToken}

	setup := nativeDB(t, m.Addr())
	emptyTable(t, setup, "replay_t", "id INT PRIMARY KEY, g INT, c VARCHAR(20)")
	emptyTable(t, setup, "replay_log", "id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20)")
	ctx := ctxT(t, 2*time.Minute)
	for i := 1; i <= 20; i++ {
		_, err := setup.ExecContext(ctx, "INSERT INTO replay_t VALUES (?, ?, ?)", i, i%4, fmt.Sprint("c", i))
		require.NoError(t, err)
	}

	res := ctl(t, bin, withToken, "-o", "json", "traffic", "capture", "--cluster", "main", "--duration", "5m")
	require.Equal(t, 0, res.code, res.stderr)
	text := nativeDB(t, p.Addr, func(c *mysql.Config) error { c.InterpolateParams = true; return nil })
	prep := nativeDB(t, p.Addr)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for s := 0; s < 3; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			conn, err := text.Conn(ctx)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			pconn, err := prep.Conn(ctx)
			if err != nil {
				errs <- err
				return
			}
			defer pconn.Close()
			stmt, err := pconn.PrepareContext(ctx, "SELECT c FROM replay_t WHERE id = ?")
			if err != nil {
				errs <- err
				return
			}
			defer stmt.Close()
			for i := 0; i < 5; i++ {
				rows, err := conn.QueryContext(ctx, "SELECT * FROM replay_t WHERE g = ?", (s+i)%4)
				if err != nil {
					errs <- err
					return
				}
				for rows.Next() {
				}
				rows.Close()
				var c string
				if err := stmt.QueryRowContext(ctx, s*5+i+1).Scan(&c); err != nil {
					errs <- err
				}
				if _, err := conn.ExecContext(ctx, "INSERT INTO replay_log (v) VALUES (?)", fmt.Sprint(s, "-", i)); err != nil {
					errs <- err
				}
				if _, err := conn.ExecContext(ctx, "SELECT nope FROM replay_t"); mysqlErrCode(err) != 1054 {
					errs <- fmt.Errorf("want 1054, got %v", err)
				}
			}
		}(s)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.NoError(t, text.Close())
	require.NoError(t, prep.Close())
	res = ctl(t, bin, withToken, "-o", "json", "traffic", "cancel")
	require.Equal(t, 0, res.code, res.stderr)
	var st api.TrafficCapture
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &st))
	require.Zero(t, st.Dropped)

	replay := func(readOnly bool) (traffic.Report, int) {
		return replayCapture(t, bin, st.File, m.Addr(), readOnly)
	}
	digest := func(rep traffic.Report, text string) traffic.DigestReport {
		for _, d := range rep.Digests {
			if d.DigestText == text {
				return d
			}
		}
		require.Failf(t, "no digest", "%q not in %+v", text, rep.Digests)
		return traffic.DigestReport{}
	}
	const (
		byGroup = "select * from `replay_t` where `g` = ?"
		byID    = "select `c` from `replay_t` where `id` = ?"
		insert  = "insert into `replay_log` ( `v` ) values ( ? )"
		bad     = "select `nope` from `replay_t`"
	)

	rep, code := replay(true)
	require.Equal(t, 0, code, "no mismatch: %+v", rep)
	require.Equal(t, 3, rep.Sessions*1/2, "three text sessions and three prepared ones: %d", rep.Sessions)
	require.Equal(t, 15, digest(rep, byGroup).Replayed)
	require.Equal(t, 15, digest(rep, byID).Replayed, "prepared executes are replayed with their parameters")
	require.Equal(t, 15, digest(rep, insert).Skipped, "read-only skips writes")
	require.Equal(t, 15, digest(rep, bad).Replayed)
	require.Zero(t, rep.Mismatches())
	before := digest(rep, byGroup).Checksum

	rep, code = replay(false)
	require.Equal(t, 0, code, "%+v", rep)
	require.Equal(t, 15, digest(rep, insert).Replayed)
	require.Equal(t, before, digest(rep, byGroup).Checksum, "same data, same checksum")

	// One row changes group: the group reads differ, nothing else does.
	_, err := setup.ExecContext(ctx, "UPDATE replay_t SET g = 99 WHERE id = 1")
	require.NoError(t, err)
	rep, code = replay(true)
	require.Equal(t, 1, code, "mismatches exit 1")
	require.Positive(t, digest(rep, byGroup).RowMismatches)
	require.NotEqual(t, before, digest(rep, byGroup).Checksum)
	for _, d := range rep.Digests {
		if d.DigestText != byGroup {
			require.Zero(t, d.RowMismatches+d.ErrorMismatches, "%+v", d)
		}
	}
}

// replayCapture replays the capture file with proxyctl (bin) against target
// as the native user at full speed, read-only or in full, and returns the
// report and proxyctl's exit code. A statement that could not be replayed
// fails the test.
func replayCapture(t *testing.T, bin, file, target string, readOnly bool) (traffic.Report, int) {
	t.Helper()
	args := []string{"-o", "json", "traffic", "replay", "--file", file, "--target", target,
		"--user", testenv.NativeUser, "--speed", "0"}
	if readOnly {
		args = append(args, "--read-only")
	}
	res := ctl(t, bin, []string{"SWITCHYARD_REPLAY_PASSWORD=" + testenv.NativePassword}, args...)
	var rep traffic.Report
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &rep), res.stdout+res.stderr)
	require.Zero(t, rep.Failed, "%v", rep.Errors)
	return rep, res.code
}
