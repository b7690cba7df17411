package soak

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Report is everything a soak run found, written as report.json and
// report.txt.
type Report struct {
	Started  time.Time         `json:"started"`
	Ended    time.Time         `json:"ended"`
	Settings map[string]string `json:"settings"`
	// Machine is the conditions of the run: CPUs, load averages sampled
	// during it, the commit.
	Machine map[string]string `json:"machine"`
	LoadAvg []string          `json:"loadavg_samples"`

	Policy       Policy          `json:"policy"`
	Faults       []Fault         `json:"faults"`
	Reloads      int             `json:"reloads"`
	ReloadErrors []string        `json:"reload_errors"`
	Warmup       []StreamVerdict `json:"warmup"`
	Streams      []StreamVerdict `json:"streams"`
	Ledger       []LedgerVerdict `json:"ledger"`
	Idle         []IdleResult    `json:"idle"`
	Resources    []ResourceCheck `json:"resources"`

	// Violations is every broken invariant; the run passes when it is empty.
	Violations []string `json:"violations"`
	Pass       bool     `json:"pass"`
}

// ResourceCheck is one proxy's figures at the warm-up baseline and after the
// load stopped.
type ResourceCheck struct {
	Proxy    string      `json:"proxy"`
	Note     string      `json:"note,omitempty"`
	Baseline Resources   `json:"baseline"`
	Final    Resources   `json:"final"`
	Series   []Resources `json:"samples_after_load"`
	Over     []string    `json:"over_tolerance"`
}

// IdleResult is how many idle connections answered a ping at the end.
type IdleResult struct {
	Name   string `json:"name"`
	Opened int    `json:"opened"`
	Alive  int    `json:"alive"`
	First  string `json:"first_error,omitempty"`
	// RetriedOpens is how many logins were refused and retried while the
	// connections were opened (after the proxy's restart: ERR 1429 until
	// the discovered cluster's topology is loaded).
	RetriedOpens int64 `json:"retried_opens"`
}

// Finish collects every violation into r.Violations and sets Pass.
func (r *Report) Finish() {
	for _, v := range r.Warmup {
		for _, s := range v.Violations {
			r.Violations = append(r.Violations, "warm-up "+v.Name+": "+s)
		}
	}
	for _, v := range r.Streams {
		for _, s := range v.Violations {
			r.Violations = append(r.Violations, v.Name+": "+s)
		}
	}
	for _, l := range r.Ledger {
		r.Violations = append(r.Violations, l.Violations()...)
	}
	for _, c := range r.Resources {
		for _, o := range c.Over {
			r.Violations = append(r.Violations, "resources of "+c.Proxy+": "+o)
		}
	}
	for _, f := range r.Faults {
		if f.Err != "" {
			r.Violations = append(r.Violations, fmt.Sprintf("fault %s of %s could not be carried out: %s", f.Kind, f.Target, f.Err))
		}
	}
	r.Violations = append(r.Violations, r.ReloadErrors...)
	r.Pass = len(r.Violations) == 0
}

// Write stores report.json and report.txt in dir.
func (r *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), js, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "report.txt"), []byte(r.Text()), 0o644)
}

// Text is the human-readable report.
func (r *Report) Text() string {
	var b strings.Builder
	verdict := "PASS"
	if !r.Pass {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "Switchyard soak: %s\n", verdict)
	fmt.Fprintf(&b, "started %s, ended %s (%s)\n", r.Started.UTC().Format(time.RFC3339), r.Ended.UTC().Format(time.RFC3339), r.Ended.Sub(r.Started).Round(time.Second))
	fmt.Fprintf(&b, "settings: %s\n", kv(r.Settings))
	fmt.Fprintf(&b, "machine: %s\n", kv(r.Machine))
	if len(r.LoadAvg) > 0 {
		fmt.Fprintf(&b, "load averages (1/5/15 min) during the run: %s\n", strings.Join(r.LoadAvg, " | "))
	}
	fmt.Fprintf(&b, "faulted cluster %q, restarted proxy %q; fault window %v before to %v after; longest stall allowed %v\n",
		r.Policy.FaultedCluster, r.Policy.RestartedProxy, r.Policy.Before, r.Policy.After, r.Policy.MaxStall)

	fmt.Fprintf(&b, "\nFaults (%d) and reloads (%d):\n", len(r.Faults), r.Reloads)
	for _, f := range r.Faults {
		fmt.Fprintf(&b, "  %s  %-13s %-22s back after %5.1fs", f.Start.Format(timeFmt), f.Kind, f.Target, f.End.Sub(f.Start).Seconds())
		if f.Err != "" {
			fmt.Fprintf(&b, "  ERROR: %s", f.Err)
		}
		b.WriteString("\n")
	}

	fmt.Fprintf(&b, "\nLoad streams (errors are judged against the fault windows):\n")
	fmt.Fprintf(&b, "  %-24s %-9s %8s %6s %9s %11s %9s  %s\n", "stream", "untouched", "txns", "errors", "in window", "disconnects", "max stall", "errors by kind and code")
	for _, v := range r.Streams {
		fmt.Fprintf(&b, "  %-24s %-9v %8d %6d %9d %11d %9s  %s\n", v.Name, v.Untouched, v.Ops, v.Errors, v.InWindow, v.Disconnects, v.MaxStall.Round(time.Second), codes(v.ByCode))
	}
	for _, v := range r.Warmup {
		fmt.Fprintf(&b, "  warm-up %-16s %8d txns, %d errors\n", v.Name, v.Ops, v.Errors)
	}

	fmt.Fprintf(&b, "\nCommitted transactions (counting clients; ledger rows on the backends):\n")
	for _, l := range r.Ledger {
		fmt.Fprintf(&b, "  %-24s acknowledged %6d, unknown outcome %3d, failed %3d; rows %6d, missing %d, present-but-failed %d, on two backends %d, counter-rows %d\n",
			l.Client, l.Acked, l.Unknown, l.Failed, l.Found, len(l.Missing), len(l.Phantom), len(l.Duplicates), l.CounterDiff)
	}

	fmt.Fprintf(&b, "\nIdle connections (pinged once at the end):\n")
	for _, i := range r.Idle {
		fmt.Fprintf(&b, "  %-24s %4d of %4d alive, %d refused logins retried while opening", i.Name, i.Alive, i.Opened, i.RetriedOpens)
		if i.First != "" {
			fmt.Fprintf(&b, " (first error: %s)", i.First)
		}
		b.WriteString("\n")
	}

	fmt.Fprintf(&b, "\nProxy resources (warm-up baseline -> after the load stopped):\n")
	for _, c := range r.Resources {
		fmt.Fprintf(&b, "  %s: goroutines %d -> %d, fds %d -> %d, RSS %d -> %d KiB (Go heap in use %d -> %d KiB)", c.Proxy,
			c.Baseline.Goroutines, c.Final.Goroutines, c.Baseline.FDs, c.Final.FDs, c.Baseline.RSSKiB, c.Final.RSSKiB,
			c.Baseline.HeapInuseKiB, c.Final.HeapInuseKiB)
		if c.Note != "" {
			fmt.Fprintf(&b, " (%s)", c.Note)
		}
		b.WriteString("\n")
	}

	if len(r.Violations) == 0 {
		b.WriteString("\nEvery invariant held.\n")
	} else {
		fmt.Fprintf(&b, "\nViolations (%d):\n", len(r.Violations))
		for i, v := range r.Violations {
			if i == 50 {
				fmt.Fprintf(&b, "  ... and %d more (report.json has them all)\n", len(r.Violations)-50)
				break
			}
			fmt.Fprintf(&b, "  - %s\n", v)
		}
	}
	return b.String()
}

func kv(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, " ")
}

func codes(m map[string]int) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s x%d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
