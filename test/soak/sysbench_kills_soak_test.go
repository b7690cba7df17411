//go:build soak

package soak

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard/test/testenv"
)

// TestSysbenchUnderKills isolates what the soak saw twice: sysbench
// (prepared statements, --mysql-ignore-errors=all) through one proxy to a
// static cluster of two MariaDB servers, one of them SIGKILLed and restarted
// every 3 s, so that transactions are cut by ERROR 1158 far more often than
// in the soak. sysbench must end by itself (ErrorHookLua replaces the
// connections the proxy closed; without it sysbench 1.0.20 dies of SIGSEGV
// at the first one), with only server-range errors. A core dump, if any, is
// left in the test's directory (SOAK_KEEP=1 keeps it) for gdb.
// SOAK_KILLS_DURATION (default 90s) sets the length.
func TestSysbenchUnderKills(t *testing.T) {
	d := 90 * time.Second
	if v := os.Getenv("SOAK_KILLS_DURATION"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatalf("SOAK_KILLS_DURATION: %v", err)
		}
	}
	work := t.TempDir()
	if os.Getenv("SOAK_KEEP") != "" {
		var err error
		if work, err = os.MkdirTemp("", "soak-kills-"); err != nil {
			t.Fatal(err)
		}
		t.Logf("work directory kept: %s", work)
	}
	var m [2]*testenv.MariaDB
	for i := range m {
		m[i] = testenv.StartMariaDB(t, testenv.MariaDBOptions{MaxConnections: 500})
		if err := sysbenchPrepare(work, m[i]); err != nil {
			t.Fatal(err)
		}
	}
	addr := testenv.FreeAddr(t)
	cfg := fmt.Sprintf(`[proxy]
addr = %q
[api]
addr = ""
[health-check]
interval = "500ms"
timeout = "1s"
failures-to-unhealthy = 2
[[cluster]]
name = "static"
instances = [%q, %q]
migration-user = %q
migration-password = %q
`, addr, m[0].Addr(), m[1].Addr(), testenv.AdminUser, testenv.AdminPassword)
	bin := testenv.BuildProxy(t)
	testenv.StartProxy(t, bin, cfg)

	script := filepath.Join(work, "soak_oltp_rw.lua")
	if err := os.WriteFile(script, []byte(ErrorHookLua), 0o644); err != nil {
		t.Fatal(err)
	}
	// Core dumps land in the working directory (core_pattern "core").
	_ = syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{Cur: ^uint64(0), Max: ^uint64(0)})
	logPath := filepath.Join(work, "sysbench.log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("sysbench", sysbenchArgs(script, addr, "--threads=8", "--rate=200",
		"--time="+strconv.Itoa(int(d.Seconds())), "--report-interval=5", "--mysql-ignore-errors=all", "run")...)
	cmd.Dir = work
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	tick := time.NewTicker(3 * time.Second)
	defer tick.Stop()
	kills := 0
	for i := 0; ; i++ {
		select {
		case err := <-done:
			out, _ := os.ReadFile(logPath)
			t.Logf("%d kills; sysbench output tail:\n%s", kills, testenv.TailLines(string(out), 40))
			if err != nil {
				t.Fatalf("sysbench ended with %v (cores in %s)", err, work)
			}
			run, perr := ParseSysbench(strings.NewReader(string(out)), time.Now())
			if perr != nil {
				t.Fatal(perr)
			}
			reconnects := strings.Count(string(out), "SOAK-RECONNECT ")
			t.Logf("%d transactions, %d errors, %d connections replaced by the hook", run.Transactions, len(run.Errors), reconnects)
			if run.Transactions <= 0 {
				t.Fatalf("sysbench reported no transactions")
			}
			if kills >= 5 && len(run.Errors) == 0 {
				t.Fatalf("%d backend kills under 8 busy threads cut no transaction: the test did not exercise the hook", kills)
			}
			for _, e := range run.Errors {
				if e.Kind != ErrServer {
					t.Errorf("error %d at %v is not a server-range error", e.Code, e.At)
				}
			}
			return
		case <-tick.C:
			victim := m[i%2]
			victim.Kill()
			kills++
			time.Sleep(500 * time.Millisecond)
			if err := victim.Restart(); err != nil {
				t.Fatalf("restart %s: %v", victim.Addr(), err)
			}
		}
	}
}
