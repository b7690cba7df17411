package soak

import (
	"fmt"
	"sort"
	"time"
)

// Kinds of fault the soak injects.
const (
	FaultBackendKill  = "backend-kill"  // SIGKILL of a MariaDB server, then a restart
	FaultEtcdRestart  = "etcd-restart"  // SIGKILL of etcd, then a restart
	FaultProxyRestart = "proxy-restart" // SIGTERM of a proxy, then a start on the same ports
	FaultReload       = "reload"        // a config reload (never allowed to cause an error)
)

// Kinds of client error.
const (
	// ErrServer is an ERR packet with a server-range code: what a client
	// must get when the proxy cannot serve a statement.
	ErrServer = "server"
	// ErrClientCode is a 2xxx code made up by the client library (lost
	// connection, server gone): the connection broke without an ERR packet.
	ErrClientCode = "client-code"
	// ErrDisconnect is a broken or refused connection seen by a Go client.
	ErrDisconnect = "disconnect"
	// ErrTimeout is a statement that hung until the client's own timeout.
	ErrTimeout = "timeout"
)

// Fault is one thing the soak did to the system, from the moment it began
// until the target was back.
type Fault struct {
	Kind    string    `json:"kind"`
	Target  string    `json:"target"`            // backend address, proxy name, "etcd"
	Cluster string    `json:"cluster,omitempty"` // the cluster a backend kill touches
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Err     string    `json:"error,omitempty"` // the fault could not be carried out as planned
}

// ClientError is one error a load client saw.
type ClientError struct {
	At   time.Time `json:"at"`
	Kind string    `json:"kind"`
	Code int       `json:"code,omitempty"`
	Msg  string    `json:"msg,omitempty"`
}

// ServerRange reports whether code is a server's error code, not one a
// client library makes up (2000-2999).
func ServerRange(code int) bool { return code > 0 && (code < 2000 || code >= 3000) }

// Stream is the outcome of one load client: one tool through one proxy to
// one cluster.
type Stream struct {
	Name    string        `json:"name"`
	Tool    string        `json:"tool"` // "sysbench" or "counter"
	Cluster string        `json:"cluster"`
	Proxy   string        `json:"proxy"`
	Ops     int64         `json:"transactions"`
	Errors  []ClientError `json:"errors"`
	// MaxStall is the longest time without one completed transaction.
	MaxStall time.Duration `json:"max_stall_ns"`
	// ErrorTotal is sysbench's own count of ignored errors (its summary),
	// which must equal len(Errors); -1 for the counter client.
	ErrorTotal int64 `json:"error_total"`
}

// Policy says which errors a stream may see: none on a stream no fault
// touched; on the others only inside a window around a fault that touched
// it (a backend kill or etcd restart for the faulted cluster's streams, the
// restart of its own proxy for that proxy's streams), and then only clean
// ones. Disconnects are clean only around the restart of the stream's own
// proxy, which closes its clients' connections by design.
type Policy struct {
	FaultedCluster string        `json:"faulted_cluster"`
	RestartedProxy string        `json:"restarted_proxy"`
	Before         time.Duration `json:"window_before_ns"`
	After          time.Duration `json:"window_after_ns"`
	// MaxStall is the longest a stream may go without a transaction outside
	// any of its fault windows: longer is a client hang.
	MaxStall time.Duration `json:"max_stall_ns"`
}

// Untouched reports whether no fault is meant to reach s.
func (p Policy) Untouched(s Stream) bool {
	return s.Cluster != p.FaultedCluster && s.Proxy != p.RestartedProxy
}

// windows returns every fault whose window covers at for stream s.
func (p Policy) windows(s Stream, faults []Fault, at time.Time) []Fault {
	var out []Fault
	for _, f := range faults {
		relevant := false
		switch f.Kind {
		case FaultBackendKill, FaultEtcdRestart:
			relevant = s.Cluster == p.FaultedCluster
		case FaultProxyRestart:
			relevant = s.Proxy == f.Target
		}
		if relevant && !at.Before(f.Start.Add(-p.Before)) && !at.After(f.End.Add(p.After)) {
			out = append(out, f)
		}
	}
	return out
}

// clean reports whether e is an acceptable error during fault f: a
// server-range ERR packet, or a broken connection while the stream's own
// proxy restarts.
func clean(e ClientError, f Fault) (ok, disconnect bool) {
	switch {
	case e.Kind == ErrServer && ServerRange(e.Code):
		return true, false
	case f.Kind == FaultProxyRestart && (e.Kind == ErrDisconnect || e.Kind == ErrClientCode):
		return true, true
	}
	return false, false
}

// StreamVerdict is the judgement of one stream.
type StreamVerdict struct {
	Name      string         `json:"name"`
	Untouched bool           `json:"untouched"`
	Ops       int64          `json:"transactions"`
	Errors    int            `json:"errors"`
	InWindow  int            `json:"errors_in_fault_windows"`
	ByCode    map[string]int `json:"errors_by_kind_code"`
	// Disconnects are the errors accepted because the stream's own proxy
	// was restarting: counted apart, as the brief asks.
	Disconnects int           `json:"disconnects_at_own_proxy_restart"`
	MaxStall    time.Duration `json:"max_stall_ns"`
	Violations  []string      `json:"violations"`
}

// Judge applies the policy to every stream.
func (p Policy) Judge(streams []Stream, faults []Fault) []StreamVerdict {
	out := make([]StreamVerdict, 0, len(streams))
	for _, s := range streams {
		v := StreamVerdict{Name: s.Name, Untouched: p.Untouched(s), Ops: s.Ops, Errors: len(s.Errors), ByCode: map[string]int{}, MaxStall: s.MaxStall}
		for _, e := range s.Errors {
			v.ByCode[fmt.Sprintf("%s %d", e.Kind, e.Code)]++
			if v.Untouched {
				v.Violations = append(v.Violations, fmt.Sprintf("%s: error on a stream no fault touched: %s %d %s", e.At.Format(timeFmt), e.Kind, e.Code, e.Msg))
				continue
			}
			fs := p.windows(s, faults, e.At)
			if len(fs) == 0 {
				v.Violations = append(v.Violations, fmt.Sprintf("%s: error outside every fault window: %s %d %s", e.At.Format(timeFmt), e.Kind, e.Code, e.Msg))
				continue
			}
			v.InWindow++
			// Windows overlap (a backend kill while the proxy restarts):
			// the error is fine if one of them explains it.
			accepted, disconnect := false, false
			for _, f := range fs {
				if ok, d := clean(e, f); ok {
					accepted, disconnect = true, d
					if !d {
						break
					}
				}
			}
			switch {
			case !accepted:
				v.Violations = append(v.Violations, fmt.Sprintf("%s: not a clean MySQL error (during %s of %s): %s %d %s", e.At.Format(timeFmt), fs[0].Kind, fs[0].Target, e.Kind, e.Code, e.Msg))
			case disconnect:
				v.Disconnects++
			}
		}
		if s.ErrorTotal >= 0 && s.ErrorTotal != int64(len(s.Errors)) {
			v.Violations = append(v.Violations, fmt.Sprintf("sysbench counted %d ignored errors but logged %d", s.ErrorTotal, len(s.Errors)))
		}
		if s.Ops == 0 {
			v.Violations = append(v.Violations, "no transaction completed")
		}
		if p.MaxStall > 0 && s.MaxStall > p.MaxStall {
			v.Violations = append(v.Violations, fmt.Sprintf("longest time without a transaction %v > %v (a client hang)", s.MaxStall.Round(time.Second), p.MaxStall))
		}
		out = append(out, v)
	}
	return out
}

const timeFmt = "15:04:05.000"

// Resources are one proxy process's figures.
type Resources struct {
	At         time.Time `json:"at"`
	Goroutines int       `json:"goroutines"`
	FDs        int       `json:"fds"`
	RSSKiB     int64     `json:"rss_kib"`
	// HeapInuseKiB is the Go heap in use (go_memstats_heap_inuse_bytes):
	// not checked, it tells a leak (heap grows) from memory the runtime
	// keeps after use (RSS grows, heap does not).
	HeapInuseKiB int64 `json:"heap_inuse_kib"`
}

// Exceeds lists which of final's figures are above base by more than tol
// (0.10: 10 %). Falling below the baseline is fine: what the check looks for
// is what load left behind.
func Exceeds(base, final Resources, tol float64) []string {
	var out []string
	check := func(name string, b, f int64) {
		if float64(f) > float64(b)*(1+tol) {
			out = append(out, fmt.Sprintf("%s %d > baseline %d + %.0f %%", name, f, b, tol*100))
		}
	}
	check("goroutines", int64(base.Goroutines), int64(final.Goroutines))
	check("fds", int64(base.FDs), int64(final.FDs))
	check("rss_kib", base.RSSKiB, final.RSSKiB)
	return out
}

// LedgerVerdict compares what a counting client was told was committed
// with what the backends hold.
type LedgerVerdict struct {
	Client string `json:"client"`
	Acked  int    `json:"acknowledged"`
	// Unknown transactions got an error at COMMIT: either outcome is right.
	Unknown int `json:"unknown_outcome"`
	// Failed transactions got an error before COMMIT: they must be absent.
	Failed      int   `json:"failed"`
	Found       int   `json:"rows_found"`
	Missing     []int `json:"missing_acknowledged"`
	Phantom     []int `json:"present_but_failed"`
	Duplicates  []int `json:"on_two_backends"`
	CounterSum  int64 `json:"counter_sum"`
	CounterDiff int64 `json:"counter_minus_rows"`
}

// Outcome is what a counting client knows of one transaction.
type Outcome int8

const (
	Acked   Outcome = iota + 1 // COMMIT returned OK
	Unknown                    // COMMIT returned an error
	Failed                     // an earlier statement failed; rolled back
)

// CheckLedger compares outcomes (by sequence number) with found: how many
// backends hold each sequence number, and counterSum, the sum of the
// client's counter rows over the backends (each transaction adds one).
func CheckLedger(client string, outcomes map[int]Outcome, found map[int]int, counterSum int64) LedgerVerdict {
	v := LedgerVerdict{Client: client, CounterSum: counterSum}
	rows := 0
	for seq, n := range found {
		rows += n
		if n > 1 {
			v.Duplicates = append(v.Duplicates, seq)
		}
		if outcomes[seq] == Failed {
			v.Phantom = append(v.Phantom, seq)
		}
	}
	for seq, o := range outcomes {
		switch o {
		case Acked:
			v.Acked++
			if found[seq] == 0 {
				v.Missing = append(v.Missing, seq)
			}
		case Unknown:
			v.Unknown++
		case Failed:
			v.Failed++
		}
	}
	v.Found = rows
	v.CounterDiff = counterSum - int64(rows)
	sort.Ints(v.Missing)
	sort.Ints(v.Phantom)
	sort.Ints(v.Duplicates)
	return v
}

// Violations lists what is wrong with the ledger: a lost acknowledged
// commit, a failed transaction that is there anyway, a transaction on two
// backends, or a counter that disagrees with the rows (a torn transaction).
func (v LedgerVerdict) Violations() []string {
	var out []string
	if len(v.Missing) > 0 {
		out = append(out, fmt.Sprintf("%s: %d acknowledged commits lost, first %v", v.Client, len(v.Missing), head(v.Missing)))
	}
	if len(v.Phantom) > 0 {
		out = append(out, fmt.Sprintf("%s: %d transactions that failed before COMMIT are present, first %v", v.Client, len(v.Phantom), head(v.Phantom)))
	}
	if len(v.Duplicates) > 0 {
		out = append(out, fmt.Sprintf("%s: %d transactions on two backends, first %v", v.Client, len(v.Duplicates), head(v.Duplicates)))
	}
	if v.CounterDiff != 0 {
		out = append(out, fmt.Sprintf("%s: counter sum %d differs from ledger rows %d", v.Client, v.CounterSum, v.Found))
	}
	if v.Acked == 0 {
		out = append(out, fmt.Sprintf("%s: no acknowledged commit", v.Client))
	}
	return out
}

func head(s []int) []int {
	if len(s) > 5 {
		return s[:5]
	}
	return s
}
