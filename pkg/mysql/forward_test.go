package mysql

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

func wirePacket(seq byte, payload []byte) []byte {
	n := len(payload)
	return append([]byte{byte(n), byte(n >> 8), byte(n >> 16), seq}, payload...)
}

// TestForwardRun checks that runs of rows are copied verbatim and that the
// run stops at every packet the session must look at.
func TestForwardRun(t *testing.T) {
	row := func(s string) []byte { return AppendLenEncString(nil, []byte(s)) }
	eof := []byte{EOFHeader, 0, 0, 2, 0}
	errPk := AppendErr(nil, NewError(1105, "boom"))
	cases := []struct {
		name      string
		wire      [][]byte // payloads, sequence ids 1, 2, ...
		seqs      []byte   // overrides sequence ids when set
		dstSeq    byte
		wantCount int
	}{
		{name: "rows then EOF", wire: [][]byte{row("a"), row("bb"), row("ccc"), eof}, dstSeq: 1, wantCount: 3},
		{name: "stops at ERR", wire: [][]byte{row("a"), errPk}, dstSeq: 1, wantCount: 1},
		{name: "stops at empty packet", wire: [][]byte{row("a"), {}}, dstSeq: 1, wantCount: 1},
		{name: "terminator first", wire: [][]byte{eof}, dstSeq: 1, wantCount: 0},
		{name: "sequence mismatch", wire: [][]byte{row("a"), row("b")}, seqs: []byte{1, 5}, dstSeq: 1, wantCount: 1},
		{name: "destination expects another sequence", wire: [][]byte{row("a")}, dstSeq: 9, wantCount: 0},
		{name: "NULL column first", wire: [][]byte{{0xfb}, eof}, dstSeq: 1, wantCount: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var wire []byte
			for i, pl := range tc.wire {
				seq := byte(i + 1)
				if tc.seqs != nil {
					seq = tc.seqs[i]
				}
				wire = append(wire, wirePacket(seq, pl)...)
			}
			src := NewPacketIO(&fuzzConn{r: bytes.NewReader(wire)})
			var out bytes.Buffer
			dst := NewPacketIO(&fuzzConn{w: &out})
			dst.SetSequence(tc.dstSeq)
			require.NoError(t, src.rd.fill(len(wire)), "buffer the whole stream")
			n, err := src.ForwardRun(dst)
			require.NoError(t, err)
			require.Equal(t, tc.wantCount, n)
			require.NoError(t, dst.Flush())
			var want []byte
			for i := 0; i < tc.wantCount; i++ {
				want = append(want, wirePacket(byte(int(tc.dstSeq)+i), tc.wire[i])...)
			}
			require.Equal(t, want, out.Bytes(), "rows copied verbatim")
			require.Equal(t, tc.dstSeq+byte(n), dst.Sequence())
			if tc.wantCount < len(tc.wire) {
				// The rest is read normally.
				pk, err := src.Next()
				require.NoError(t, err)
				require.Equal(t, tc.wire[tc.wantCount], append([]byte{}, pk.Data...))
			}
		})
	}
}

// TestForwardRunPartialPacket leaves a packet that is not wholly buffered to
// the slow path.
func TestForwardRunPartialPacket(t *testing.T) {
	full := wirePacket(1, AppendLenEncString(nil, []byte("complete")))
	partial := wirePacket(2, AppendLenEncString(nil, bytes.Repeat([]byte("x"), 100)))
	src := NewPacketIO(&fuzzConn{r: bytes.NewReader(append(full, partial[:20]...))})
	require.NoError(t, src.rd.fill(len(full)+20))
	var out bytes.Buffer
	dst := NewPacketIO(&fuzzConn{w: &out})
	dst.SetSequence(1)
	n, err := src.ForwardRun(dst)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.NoError(t, dst.Flush())
	require.Equal(t, full, out.Bytes())
	require.Equal(t, 20, src.rd.buffered())
}

// FuzzForwardRun interleaves ForwardRun with the per-packet path on
// arbitrary input: it must never panic, and what it copies must be exactly
// the bytes it consumed.
func FuzzForwardRun(f *testing.F) {
	row := wirePacket(1, AppendLenEncString(nil, []byte("row")))
	f.Add(append(append(append([]byte{}, row...), wirePacket(2, []byte("x"))...), wirePacket(3, []byte{EOFHeader, 0, 0, 2, 0})...), uint8(1))
	f.Add(wirePacket(5, []byte{0xff, 1, 2}), uint8(5))
	f.Add([]byte{0xff, 0xff, 0xff, 1, 0}, uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, seq uint8) {
		src := NewPacketIO(&fuzzConn{r: &fuzzChunkReader{r: bytes.NewReader(data), sizes: []int{7, 600, 33000}}})
		var out bytes.Buffer
		dst := NewPacketIO(&fuzzConn{w: &out})
		dst.SetSequence(seq)
		for i := 0; i < 1000; i++ {
			require.NoError(t, dst.Flush())
			before := out.Len()
			consumed := append([]byte(nil), src.rd.buf[src.rd.r:src.rd.w]...)
			n, err := src.ForwardRun(dst)
			require.NoError(t, err)
			require.NoError(t, dst.Flush())
			copied := out.Bytes()[before:]
			require.True(t, bytes.HasPrefix(consumed, copied), "ForwardRun copied bytes it did not consume")
			require.Equal(t, n == 0, len(copied) == 0)
			if _, err := src.Next(); err != nil {
				return
			}
			if err := src.ForwardCurrent(dst); err != nil {
				return
			}
		}
	})
}

// failingWriter takes n bytes, then fails every write.
type failingWriter struct{ n int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, errors.New("connection reset by peer")
	}
	w.n -= len(p)
	return len(p), nil
}

// A destination that fails midway through a packet: ForwardCurrent reads
// the rest of the packet all the same, so the source stays in step, and
// says whose the error was. A source that ends early is not the
// destination's fault.
func TestForwardCurrentDestinationFails(t *testing.T) {
	for _, size := range []int{300 << 10, MaxPayloadLen + 10} {
		payload := bytes.Repeat([]byte("d"), size)
		var wire []byte
		for seq, rest := byte(2), payload; ; seq++ {
			n := min(len(rest), MaxPayloadLen)
			wire = append(wire, wirePacket(seq, rest[:n])...)
			rest = rest[n:]
			if n < MaxPayloadLen {
				wire = append(wire, wirePacket(seq+1, []byte("next"))...)
				break
			}
		}
		src := NewPacketIO(&fuzzConn{r: bytes.NewReader(wire)})
		dst := NewPacketIO(&fuzzConn{w: &failingWriter{n: 1000}})
		pk, err := src.Next()
		require.NoError(t, err)
		require.Equal(t, min(size, MaxPayloadLen), pk.Len)
		err = src.ForwardCurrent(dst)
		require.ErrorIs(t, err, ErrForwardWrite, "size %d", size)
		require.ErrorContains(t, err, "connection reset by peer")
		pk, err = src.Next()
		require.NoError(t, err, "size %d: the source is in step", size)
		require.Equal(t, "next", string(pk.Data))
	}

	short := wirePacket(1, bytes.Repeat([]byte("d"), 300<<10))
	src := NewPacketIO(&fuzzConn{r: bytes.NewReader(short[:100<<10])})
	_, err := src.Next()
	require.NoError(t, err)
	err = src.ForwardCurrent(NewPacketIO(&fuzzConn{}))
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	require.NotErrorIs(t, err, ErrForwardWrite)
}
