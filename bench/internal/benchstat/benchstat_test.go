package benchstat

import (
	"os"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100) // 1..100 ms
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	ms := time.Millisecond
	for _, c := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one sample", []time.Duration{3 * ms}, 99, 3 * ms},
		{"p0 is the minimum", hundred, 0, 1 * ms},
		{"p50 of 100", hundred, 50, 50 * ms},
		{"p7 of 100 (7/100*100 > 7 in floating point)", hundred, 7, 7 * ms},
		{"p95 of 100", hundred, 95, 95 * ms},
		{"p99 of 100", hundred, 99, 99 * ms},
		{"p100 is the maximum", hundred, 100, 100 * ms},
		{"p50 of 4 is the second", []time.Duration{1, 2, 3, 4}, 50, 2},
		{"p51 of 4 is the third", []time.Duration{1, 2, 3, 4}, 51, 3},
		{"p95 of 10 is the last", []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 95, 10},
		{"above 100 is clamped", []time.Duration{1, 2}, 150, 2},
	} {
		if got := Percentile(c.sorted, c.p); got != c.want {
			t.Errorf("%s: Percentile(p=%v) = %v, want %v", c.name, c.p, got, c.want)
		}
	}
}

func TestProcCPU(t *testing.T) {
	before, err := ProcCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spin until the process has used 50 ms more (a few clock ticks).
	deadline := time.Now().Add(10 * time.Second)
	for {
		now, err := ProcCPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if now-before >= 50*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU time moved from %s to %s in 10 s of spinning", before, now)
		}
	}
	if _, err := ProcCPU(1 << 30); err == nil {
		t.Fatal("no error for a process that does not exist")
	}
}

func TestProcRSS(t *testing.T) {
	before, err := ProcRSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if before <= 0 {
		t.Fatalf("VmRSS %d", before)
	}
	// 64 MiB, touched: the resident set grows by about as much.
	b := make([]byte, 64<<20)
	for i := range b {
		b[i] = 1
	}
	after, err := ProcRSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 32<<20 {
		t.Fatalf("VmRSS grew from %d to %d bytes after touching 64 MiB", before, after)
	}
	_ = b[len(b)-1]
	if _, err := ProcRSS(1 << 30); err == nil {
		t.Fatal("no error for a process that does not exist")
	}
}
