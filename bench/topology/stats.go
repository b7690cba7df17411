package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/switchyard-db/switchyard/bench/internal/benchstat"
)

// summary is the order statistics of one series of durations.
type summary struct {
	N                  int
	Min, Med, P90, Max time.Duration
	Mean               time.Duration
}

// summarize uses the nearest-rank percentile (benchstat.Percentile).
func summarize(ds []time.Duration) summary {
	s := summary{N: len(ds)}
	if len(ds) == 0 {
		return s
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	s.Mean = sum / time.Duration(len(ds))
	s.Min, s.Max = sorted[0], sorted[len(ds)-1]
	s.Med, s.P90 = benchstat.Percentile(sorted, 50), benchstat.Percentile(sorted, 90)
	return s
}

// ms renders a duration in milliseconds with three significant-ish digits.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	default:
		return fmt.Sprintf("%.2f ms", v)
	}
}

// selfCPU is this process's user+system CPU time (all threads).
func selfCPU() time.Duration {
	cpu, _ := selfUsage()
	return cpu
}

// selfUsage reads this process's CPU time (user+system, all threads) and
// how many times its threads gave up a CPU, voluntarily (to sleep: a park,
// a poll, a futex) or not: a count of its wake-ups, which on an idle
// process cost more than the work they run.
func selfUsage() (cpu time.Duration, switches int64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Nvcsw + ru.Nivcsw
}

// procCPU is utime+stime of another process (all its threads); ok is false
// when it cannot be read.
func procCPU(pid int) (time.Duration, bool) {
	d, err := benchstat.ProcCPU(pid)
	return d, err == nil
}

// machineCPU reads /proc/stat's "cpu" line, summed over all CPUs: busy =
// user + nice + system + irq + softirq (guest time is inside user), steal,
// and total, as bench/run.sh does.
func machineCPU() (busy, steal, total time.Duration, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, 0, false
	}
	var v [8]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return 0, 0, 0, false
		}
	}
	// user nice system idle iowait irq softirq steal
	busy = time.Duration(v[0]+v[1]+v[2]+v[5]+v[6]) * benchstat.ClockTick
	steal = time.Duration(v[7]) * benchstat.ClockTick
	total = time.Duration(v[0]+v[1]+v[2]+v[3]+v[4]+v[5]+v[6]+v[7]) * benchstat.ClockTick
	return busy, steal, total, true
}

// openFDs counts this process's open file descriptors.
func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func kib(b float64) string { return fmt.Sprintf("%.1f KiB", b/(1<<10)) }

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// waitQuiet waits, up to limit, for a second in which processes other than
// this one and pids used less than maxPct % of the machine. It returns the
// last share seen (-1 when /proc/stat is unreadable); it never fails, since
// a busy machine is reported, not refused.
func waitQuiet(ctx context.Context, limit time.Duration, maxPct float64, pids ...int) float64 {
	deadline := time.Now().Add(limit)
	for {
		busy0, _, total0, ok0 := machineCPU()
		mine0 := ownCPU(pids)
		if sleepCtx(ctx, time.Second) != nil {
			return -1
		}
		busy1, _, total1, ok1 := machineCPU()
		if !ok0 || !ok1 || total1 <= total0 {
			return -1
		}
		other := max(0, pct(busy1-busy0-(ownCPU(pids)-mine0), total1-total0))
		if other < maxPct || time.Now().After(deadline) {
			return other
		}
	}
}

// ownCPU is the CPU of this process and of pids.
func ownCPU(pids []int) time.Duration {
	d := selfCPU()
	for _, p := range pids {
		if c, ok := procCPU(p); ok {
			d += c
		}
	}
	return d
}
