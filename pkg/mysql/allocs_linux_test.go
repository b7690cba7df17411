//go:build linux && !race

// Not under the race detector: it makes sync.Pool drop a quarter of what is
// put back, so pooled buffers are allocated again at random. `make unit`
// runs these tests once more without it.

package mysql

import (
	"testing"
)

// TestRelayAllocatesNothing relays a query and its result set over loopback
// TCP as a session does (Next, ForwardCurrent and ForwardRun, Flush, and
// Release before the next command) and requires that the relay allocate
// nothing. Until 2026-12-07 it allocated 6 times a point select: a
// packet's header escaped to the heap on its way to the buffer, and every
// raw write asked the connection for a new RawConn.
func TestRelayAllocatesNothing(t *testing.T) {
	cli, pxc := tcpPair(t) // the client and the proxy's client side
	pxb, be := tcpPair(t)  // the proxy's backend side and the backend
	client, front, back, backend := NewPacketIO(cli), NewPacketIO(pxc), NewPacketIO(pxb), NewPacketIO(be)

	query := append([]byte{ComQuery}, "SELECT c FROM sbtest1 WHERE id=1"...)
	response := [][]byte{
		{1}, // one column
		append([]byte{3}, "def\x06sbtest\x07sbtest1\x07sbtest1\x01c\x01c\x0c\x08\x00\x78\x00\x00\x00\xfe\x00\x00\x00\x00\x00"...),
		append([]byte{0x78}, make([]byte, 120)...), // the row
		{EOFHeader, 0, 0, 2, 0},                    // the terminator (OK with 0xfe)
	}
	var failed error
	check := func(err error) {
		if err != nil && failed == nil {
			failed = err
		}
	}
	round := func() {
		client.ResetSequence()
		check(client.WritePacket(query))
		check(client.Flush())

		// The proxy forwards the command.
		_, err := front.Next()
		check(err)
		back.ResetSequence()
		check(front.ForwardCurrent(back))
		check(back.Flush())

		// The backend answers.
		_, err = backend.Next()
		check(err)
		check(backend.DiscardCurrent())
		for _, p := range response {
			check(backend.WritePacket(p))
		}
		check(backend.Flush())

		// The proxy forwards the answer: packet by packet where it needs a
		// look, the rows in one run.
		for range 2 {
			_, err = back.Next()
			check(err)
			check(back.ForwardCurrent(front))
		}
		_, err = back.ForwardRun(front)
		check(err)
		_, err = back.Next()
		check(err)
		check(back.ForwardCurrent(front))
		check(front.Flush())
		front.Release()
		back.Release()

		for range response {
			_, err = client.Next()
			check(err)
			check(client.DiscardCurrent())
		}
		client.Release()
		backend.Release()
	}
	round() // the pools and the poller's registrations warm up
	if allocs := testing.AllocsPerRun(200, round); allocs != 0 {
		t.Errorf("a relayed query allocates %v times, want 0", allocs)
	}
	if failed != nil {
		t.Fatal(failed)
	}
}
