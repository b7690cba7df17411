//go:build linux && !race

// Not under the race detector, which makes sync.Pool drop what is put back
// at random; `make unit` runs these tests once more without it.

package backend

import (
	"io"
	"testing"

	"github.com/switchyard-db/switchyard/pkg/mysql"
)

// TestSockConnWritesAllocateNothing: a session's packets written through a
// freezable connection allocate nothing (it keeps its RawConn instead of
// asking the net.TCPConn for a new one at each write), before and after a
// freeze and thaw.
func TestSockConnWritesAllocateNothing(t *testing.T) {
	sc, peer := sockPair(t)
	pio := mysql.NewPacketIO(sc)
	payload, buf := []byte("ping"), make([]byte, 8)
	var failed error
	write := func() {
		pio.ResetSequence()
		if err := pio.WritePacket(payload); err != nil && failed == nil {
			failed = err
		}
		if err := pio.Flush(); err != nil && failed == nil {
			failed = err
		}
		if _, err := io.ReadFull(peer, buf); err != nil && failed == nil {
			failed = err
		}
		pio.Release()
	}
	for _, thawed := range []bool{false, true} {
		if thawed {
			if !sc.Freeze() {
				t.Fatal("the connection did not freeze")
			}
		}
		write() // thaws a frozen connection; warms the pools
		if allocs := testing.AllocsPerRun(200, write); allocs != 0 {
			t.Errorf("thawed=%v: a packet written allocates %v times, want 0", thawed, allocs)
		}
	}
	if failed != nil {
		t.Fatal(failed)
	}
}
