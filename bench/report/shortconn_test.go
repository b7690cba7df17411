package main

import (
	"strings"
	"testing"
)

func TestShortconnTable(t *testing.T) {
	header := strings.Join(shortconnCols, "\t")
	rows := []string{
		// target rep status conns failed secs rate late p50 p95 p99 l50 l95 l99 proxy_cpu_us db_cpu_us steal other
		"direct\t1\tok\t1000\t0\t5.00\t200.0\t0\t1.000\t2.000\t3.000\t0.500\t0.9\t1.0\t-\t400000\t0.0\t2.0",
		"haproxy\t1\tok\t1000\t0\t5.00\t200.0\t0\t1.200\t2.400\t3.600\t0.600\t1\t1\t50000\t410000\t0.0\t1.0",
		"switchyard\t1\tok\t1000\t1\t5.00\t199.8\t2\t2.400\t4.800\t9.000\t1.400\t2\t2\t200000\t420000\t0.0\t4.0",
		"direct\t2\tok\t1000\t0\t5.00\t200.0\t0\t1.100\t2.200\t3.100\t0.500\t0.9\t1.0\t-\t400000\t0.0\t1.0",
		"haproxy\t2\tok\t1000\t0\t5.00\t200.0\t0\t1.400\t2.600\t3.800\t0.600\t1\t1\t70000\t410000\t0.0\t1.0",
		"switchyard\t2\tok\t1000\t0\t5.00\t200.0\t0\t2.600\t5.200\t9.400\t1.400\t2\t2\t240000\t420000\t0.0\t12.5",
		// A run that did not finish: it only counts as failed.
		"switchyard\t3\tfail\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0.0\t3.0",
	}
	data, order, err := readShortconn(strings.NewReader(header + "\n" + strings.Join(rows, "\n") + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	writeShortconn(&b, data, order)
	out := b.String()
	for _, want := range []string{
		"| direct | 2000 (0) | 200.0 | 1.050 / 2.100 / 3.050 | 0.500 | - | 400 | 2 |",
		"| haproxy | 2000 (0) | 200.0 | 1.300 / 2.500 / 3.700 | 0.600 | 60 | 410 | 1 |",
		"| switchyard | 2000 (1), 1 of 3 runs FAILED, 2 late | 199.9 | 2.500 / 5.000 / 9.200 | 1.400 | 220 | 420 | 12 |",
		// 220/60, 2.5/1.3, 5.0/2.5, 9.2/3.7
		"| switchyard / haproxy | 3.67 | 1.92 | 2.00 | 2.49 |",
		"| switchyard / direct | - | 2.38 | 2.38 | 3.02 |",
		"| haproxy / direct | - | 1.24 | 1.19 | 1.21 |",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing line %q in\n%s", want, out)
		}
	}

	if _, _, err := readShortconn(strings.NewReader("target\trep\n")); err == nil {
		t.Error("a header without the expected columns was accepted")
	}
	if _, _, err := readShortconn(strings.NewReader(header + "\ndirect\t1\tok\n")); err == nil {
		t.Error("a short line was accepted")
	}
}
