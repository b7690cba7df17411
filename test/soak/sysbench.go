package soak

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ErrorHookLua wraps sysbench's oltp_read_write so that every error it
// ignores (--mysql-ignore-errors=all) is logged with its time and code:
// sysbench itself only prints per-second error rates.
//
// It also replaces a connection that an error ended (SQLSTATE class 08, such
// as the proxy's ERROR 1158 for a transaction whose backend died, after which
// the proxy closes the session the way a dying server would) before sysbench
// touches it again. sysbench 1.0.20 cannot reconnect by itself when linked
// with libmariadb (Debian's build): on CR_SERVER_LOST it calls mysql_close and
// then mysql_real_connect on the same freed handle and dies of SIGSEGV in
// mysql_optionsv, directly against MariaDB as much as through the proxy
// (reproduced with KILL on a direct connection; akopytov/sysbench#527).
// The hook instead closes the statements and the connection, opens a new
// connection through the driver (mysql_init on a fresh handle), retrying
// while the login fails, and prepares the statements again.
const ErrorHookLua = `-- Written by the soak (test/soak): oltp_read_write, logging each ignored error.
require("oltp_read_write")
local ffi = require("ffi")
ffi.cdef("int usleep(unsigned int);")

local function replace_connection()
   close_statements()
   pcall(function() con:disconnect() end)
   for attempt = 1, 600 do
      local ok, c = pcall(function() return drv:connect() end)
      if ok then
         con = c
         prepare_statements()
         return
      end
      ffi.C.usleep(100000)
   end
   error("soak hook: no new connection within 60 s")
end

local restart = sysbench.hooks.before_restart_event
function sysbench.hooks.before_restart_event(errdesc)
   local state = tostring(errdesc.sql_state)
   io.stdout:write(string.format("SOAK-ERROR %d %d %s\n", os.time(),
      errdesc.sql_errno or 0, state))
   io.stdout:flush()
   if state:sub(1, 2) == "08" and (errdesc.sql_errno or 0) < 2000 then
      replace_connection()
      io.stdout:write(string.format("SOAK-RECONNECT %d\n", os.time()))
      io.stdout:flush()
      return
   end
   restart(errdesc)
end
`

// SysbenchRun is what one sysbench run printed.
type SysbenchRun struct {
	Seconds      []SysbenchSecond
	Errors       []ClientError
	Transactions int64 // from the summary; -1 when sysbench printed none
	Ignored      int64 // "ignored errors" of the summary; -1 when absent
	Reconnects   int64 // -1 when absent
}

// SysbenchSecond is one --report-interval=1 line.
type SysbenchSecond struct {
	At     time.Time `json:"at"`
	TPS    float64   `json:"tps"`
	ErrPS  float64   `json:"err_per_s"`
	Reconn float64   `json:"reconn_per_s"`
}

var (
	reportLine  = regexp.MustCompile(`^\[\s*(\d+)s\s*\].*?\btps:\s*([\d.]+).*?err/s:\s*([\d.]+)\s+reconn/s:\s*([\d.]+)`)
	summaryLine = regexp.MustCompile(`^\s*(transactions|ignored errors|reconnects):\s+(\d+)`)
)

// ParseSysbench reads sysbench's output; started is when the run began,
// from which its per-second lines count.
func ParseSysbench(r io.Reader, started time.Time) (SysbenchRun, error) {
	run := SysbenchRun{Transactions: -1, Ignored: -1, Reconnects: -1}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "SOAK-ERROR "); ok {
			f := strings.Fields(rest)
			if len(f) < 2 {
				return run, fmt.Errorf("malformed error line %q", line)
			}
			unix, err1 := strconv.ParseInt(f[0], 10, 64)
			code, err2 := strconv.Atoi(f[1])
			if err1 != nil || err2 != nil {
				return run, fmt.Errorf("malformed error line %q", line)
			}
			kind := ErrServer
			if !ServerRange(code) {
				kind = ErrClientCode
			}
			msg := ""
			if len(f) > 2 {
				msg = "sqlstate " + f[2]
			}
			run.Errors = append(run.Errors, ClientError{At: time.Unix(unix, 0), Kind: kind, Code: code, Msg: msg})
			continue
		}
		if m := reportLine.FindStringSubmatch(line); m != nil {
			sec, _ := strconv.Atoi(m[1])
			tps, _ := strconv.ParseFloat(m[2], 64)
			eps, _ := strconv.ParseFloat(m[3], 64)
			rps, _ := strconv.ParseFloat(m[4], 64)
			run.Seconds = append(run.Seconds, SysbenchSecond{At: started.Add(time.Duration(sec) * time.Second), TPS: tps, ErrPS: eps, Reconn: rps})
			continue
		}
		if m := summaryLine.FindStringSubmatch(line); m != nil {
			n, _ := strconv.ParseInt(m[2], 10, 64)
			switch m[1] {
			case "transactions":
				run.Transactions = n
			case "ignored errors":
				run.Ignored = n
			case "reconnects":
				run.Reconnects = n
			}
		}
	}
	return run, sc.Err()
}

// MaxStall is the longest run of consecutive report seconds without a
// transaction.
func (r SysbenchRun) MaxStall() time.Duration {
	var longest, cur time.Duration
	for _, s := range r.Seconds {
		if s.TPS == 0 {
			cur += time.Second
			longest = max(longest, cur)
		} else {
			cur = 0
		}
	}
	return longest
}
