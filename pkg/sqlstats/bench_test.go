package sqlstats

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkRecordRepeated is the per-statement cost for a prepared statement
// or any text seen before (sysbench point_select with server-side prepare).
func BenchmarkRecordRepeated(b *testing.B) {
	c := New(Options{}).Cluster("east")
	e := &Exec{User: "sbtest", Schema: "sbtest", Text: []byte("SELECT c FROM sbtest1 WHERE id=?"), Latency: 200 * time.Microsecond, At: time.Now(), RowsSent: 1}
	b.ReportAllocs()
	for b.Loop() {
		c.Record(e)
	}
}

// BenchmarkRecordRepeatedParallel is the same from every P at once, all on
// one digest (the worst case for sharing).
func BenchmarkRecordRepeatedParallel(b *testing.B) {
	c := New(Options{}).Cluster("east")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		e := &Exec{User: "sbtest", Schema: "sbtest", Text: []byte("SELECT c FROM sbtest1 WHERE id=?"), Latency: 200 * time.Microsecond, At: time.Now(), RowsSent: 1}
		for pb.Next() {
			c.Record(e)
		}
	})
}

// BenchmarkRecordLiterals is text protocol with a new literal each time
// (sysbench --db-ps-mode=disable): every text is new, so every statement is
// normalised.
func BenchmarkRecordLiterals(b *testing.B) {
	c := New(Options{}).Cluster("east")
	var i atomic.Int64
	text := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		text = fmt.Appendf(text[:0], "SELECT c FROM sbtest1 WHERE id=%d", i.Add(1))
		c.Record(&Exec{User: "sbtest", Schema: "sbtest", Text: text, Latency: 200 * time.Microsecond, At: time.Now(), RowsSent: 1})
	}
}
