package mysql

import (
	"bytes"
	stdzlib "compress/zlib"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// compressTestRW joins a wire to read from and a wire to write to.
type compressTestRW struct {
	io.Reader
	io.Writer
}

type compressTestFrame struct {
	seq     byte
	ulen    int
	payload []byte
}

// compressTestText returns n bytes that compress the way result sets do.
// Callers must not modify them.
func compressTestText(n int) []byte {
	if n > 1<<20 && n <= 20<<20 {
		return compressTestBigText()[:n:n]
	}
	return compressTestGenText(n)
}

// compressTestBigText is generated once: that is slow under the race detector.
var compressTestBigText = sync.OnceValue(func() []byte { return compressTestGenText(20 << 20) })

func compressTestGenText(n int) []byte {
	cities := []string{"Lisbon", "Osaka", "Quito", "Tromsø", "Lagos"}
	b := make([]byte, 0, n+64)
	for i := 0; len(b) < n; i++ {
		b = fmt.Appendf(b, "row %d: user%d lives in %s;", i, i%97, cities[i%len(cities)])
	}
	return b[:n]
}

func compressTestRandom(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{1})
	_, _ = r.Read(b)
	return b
}

// compressTestFrameBytes builds a frame by hand.
func compressTestFrameBytes(seq byte, ulen int, payload []byte) []byte {
	b := make([]byte, compressHeaderLen, compressHeaderLen+len(payload))
	putUint24(b[0:3], len(payload))
	b[3] = seq
	putUint24(b[4:7], ulen)
	return append(b, payload...)
}

func compressTestSplit(t *testing.T, wire []byte) []compressTestFrame {
	t.Helper()
	var frames []compressTestFrame
	for len(wire) > 0 {
		require.GreaterOrEqual(t, len(wire), compressHeaderLen)
		clen := uint24(wire[0:3])
		require.GreaterOrEqual(t, len(wire), compressHeaderLen+clen)
		frames = append(frames, compressTestFrame{
			seq:     wire[3],
			ulen:    uint24(wire[4:7]),
			payload: wire[compressHeaderLen : compressHeaderLen+clen],
		})
		wire = wire[compressHeaderLen+clen:]
	}
	return frames
}

func compressTestStdZlib(t *testing.T, data []byte, level int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := stdzlib.NewWriterLevel(&buf, level)
	require.NoError(t, err)
	_, err = zw.Write(data)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

func compressTestZstd(t *testing.T, data []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	require.NoError(t, err)
	defer enc.Close()
	return enc.EncodeAll(data, nil)
}

func compressTestReader(wire []byte, algo CompressAlgorithm) *CompressedStream {
	return NewCompressedStream(compressTestRW{Reader: bytes.NewReader(wire)}, algo, 0)
}

func TestCompressRoundTrip(t *testing.T) {
	defer goleak.VerifyNone(t)
	sizes := []int{0, 1, 49, 50, 51, 1000, 70000, 20 << 20}
	if smallPayloadsOnly() {
		sizes = sizes[:7]
	}
	for _, algo := range []CompressAlgorithm{CompressZlib, CompressZstd} {
		for _, n := range sizes {
			t.Run(fmt.Sprintf("%s/%d", algo, n), func(t *testing.T) {
				data := compressTestText(n)
				var wire bytes.Buffer
				w := NewCompressedStream(compressTestRW{Writer: &wire}, algo, 0)
				written, err := w.Write(data)
				require.NoError(t, err)
				require.Equal(t, n, written)
				require.NoError(t, w.Flush())
				// Nothing large stays attached to an idle stream.
				require.LessOrEqual(t, cap(w.wbuf), compressIdleBufCap)
				require.LessOrEqual(t, cap(w.out), compressIdleBufCap)

				frames := compressTestSplit(t, wire.Bytes())
				// 20 MiB needs two frames of at most 16 MiB - 1 each.
				require.Len(t, frames, (n+compressMaxPayload-1)/compressMaxPayload)
				total := 0
				for i, f := range frames {
					require.Equal(t, byte(i), f.seq)
					require.LessOrEqual(t, f.ulen, compressMaxPayload)
					if f.ulen == 0 {
						total += len(f.payload)
					} else {
						require.Less(t, len(f.payload), f.ulen)
						total += f.ulen
					}
					if n < compressMinLen {
						require.Zero(t, f.ulen, "short payloads are stored")
					}
					if n >= 1000 {
						require.NotZero(t, f.ulen, "text must be sent compressed")
					}
				}
				require.Equal(t, n, total)

				r := compressTestReader(wire.Bytes(), algo)
				got, err := io.ReadAll(r)
				require.NoError(t, err)
				require.True(t, bytes.Equal(data, got), "round trip of %d bytes differs", n)
				require.Zero(t, r.Buffered())
				require.LessOrEqual(t, cap(r.rbuf), compressIdleBufCap)
				require.LessOrEqual(t, cap(r.in), compressIdleBufCap)
				require.Equal(t, byte(len(frames)), r.seq)
			})
		}
	}
}

// Incompressible data is stored, including a full 16 MiB - 1 frame whose
// compressed form would not fit the 3-byte length.
func TestCompressIncompressibleStored(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, algo := range []CompressAlgorithm{CompressZlib, CompressZstd} {
		t.Run(algo.String(), func(t *testing.T) {
			for _, n := range []int{100, compressMaxPayload + 10} {
				if n > 1<<20 && smallPayloadsOnly() {
					continue
				}
				data := compressTestRandom(n)
				var wire bytes.Buffer
				w := NewCompressedStream(compressTestRW{Writer: &wire}, algo, 0)
				_, err := w.Write(data)
				require.NoError(t, err)
				require.NoError(t, w.Flush())
				for _, f := range compressTestSplit(t, wire.Bytes()) {
					require.Zero(t, f.ulen)
				}
				got, err := io.ReadAll(compressTestReader(wire.Bytes(), algo))
				require.NoError(t, err)
				require.True(t, bytes.Equal(data, got))
			}
		})
	}
}

// MySQL's MIN_COMPRESS_LENGTH: below 50 bytes a frame is stored even when it
// would compress; from 50 on it is compressed when that makes it smaller.
func TestCompressMinLength(t *testing.T) {
	defer goleak.VerifyNone(t)
	tests := []struct {
		name string
		data []byte
		// klauspost's flate only Huffman-codes inputs under 128 bytes, which
		// does not beat storing 50 repeated bytes; zstd does.
		zlibCompressed, zstdCompressed bool
	}{
		{"49 compressible", bytes.Repeat([]byte{'a'}, 49), false, false},
		{"50 compressible", bytes.Repeat([]byte{'a'}, 50), false, true},
		{"51 compressible", bytes.Repeat([]byte{'a'}, 51), false, true},
		{"200 compressible", bytes.Repeat([]byte{'a'}, 200), true, true},
		{"300 random", compressTestRandom(300), false, false},
	}
	for _, algo := range []CompressAlgorithm{CompressZlib, CompressZstd, CompressNone} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/%s", algo, tt.name), func(t *testing.T) {
				var wire bytes.Buffer
				w := NewCompressedStream(compressTestRW{Writer: &wire}, algo, 0)
				_, err := w.Write(tt.data)
				require.NoError(t, err)
				require.NoError(t, w.Flush())
				frames := compressTestSplit(t, wire.Bytes())
				require.Len(t, frames, 1)
				if (algo == CompressZlib && tt.zlibCompressed) || (algo == CompressZstd && tt.zstdCompressed) {
					require.Equal(t, len(tt.data), frames[0].ulen)
					require.Less(t, len(frames[0].payload), len(tt.data))
				} else {
					require.Zero(t, frames[0].ulen)
					require.Equal(t, tt.data, frames[0].payload)
				}
				got, err := io.ReadAll(compressTestReader(wire.Bytes(), algo))
				require.NoError(t, err)
				require.Equal(t, tt.data, got)
			})
		}
	}
}

func TestCompressSeveralPacketsInOneFrame(t *testing.T) {
	defer goleak.VerifyNone(t)
	packets := [][]byte{
		{3, 0, 0, 0, 0x03, 'S', 'E'},
		append([]byte{0xe8, 0x03, 0, 1}, compressTestText(1000)...),
		{0, 0, 0, 2},
	}
	var inner []byte
	for _, p := range packets {
		inner = append(inner, p...)
	}
	for _, algo := range []CompressAlgorithm{CompressZlib, CompressZstd} {
		t.Run(algo.String(), func(t *testing.T) {
			var wire bytes.Buffer
			w := NewCompressedStream(compressTestRW{Writer: &wire}, algo, 0)
			for _, p := range packets {
				_, err := w.Write(p)
				require.NoError(t, err)
			}
			require.Zero(t, wire.Len(), "Write must buffer until Flush")
			require.NoError(t, w.Flush())
			frames := compressTestSplit(t, wire.Bytes())
			require.Len(t, frames, 1)
			require.Equal(t, len(inner), frames[0].ulen)

			r := compressTestReader(wire.Bytes(), algo)
			for _, p := range packets {
				got := make([]byte, len(p))
				_, err := io.ReadFull(r, got)
				require.NoError(t, err)
				require.Equal(t, p, got)
			}
			require.Zero(t, r.Buffered())
		})
	}
}

// failingReader fails the test's expectations if the stream touches the wire.
type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("unexpected read") }

func TestCompressPacketSplitAcrossFrames(t *testing.T) {
	payload := compressTestText(300)
	packet := append([]byte{byte(len(payload)), byte(len(payload) >> 8), 0, 0}, payload...)
	half := len(packet) / 2
	zFirst := compressTestStdZlib(t, packet[:half], stdzlib.DefaultCompression)
	wire := append(compressTestFrameBytes(0, half, zFirst), compressTestFrameBytes(1, 0, packet[half:])...)

	r := compressTestReader(wire, CompressZlib)
	got := make([]byte, len(packet))
	_, err := io.ReadFull(r, got)
	require.NoError(t, err)
	require.Equal(t, packet, got)

	// Read returns what one frame holds instead of waiting for the next.
	r = NewCompressedStream(compressTestRW{Reader: io.MultiReader(bytes.NewReader(wire[:compressHeaderLen+len(zFirst)]), failingReader{})}, CompressZlib, 0)
	n, err := r.Read(got)
	require.NoError(t, err)
	require.Equal(t, half, n)

	// What does not fit p stays buffered and is served without the wire.
	r = NewCompressedStream(compressTestRW{Reader: io.MultiReader(bytes.NewReader(wire[:compressHeaderLen+len(zFirst)]), failingReader{})}, CompressZlib, 0)
	n, err = r.Read(got[:4])
	require.NoError(t, err)
	require.Equal(t, 4, n)
	require.Equal(t, half-4, r.Buffered())
	n, err = r.Read(got[4:])
	require.NoError(t, err)
	require.Equal(t, half-4, n)
	require.Equal(t, packet[:half], got[:half])
	require.Zero(t, r.Buffered())
	_, err = r.Read(got)
	require.ErrorContains(t, err, "unexpected read")
}

func TestCompressZlibInterop(t *testing.T) {
	data := compressTestText(5000)
	for _, level := range []int{stdzlib.BestSpeed, stdzlib.DefaultCompression, stdzlib.BestCompression} {
		// Two frames built with the standard library, as a MySQL server would.
		wire := compressTestFrameBytes(7, 2000, compressTestStdZlib(t, data[:2000], level))
		wire = append(wire, compressTestFrameBytes(8, 3000, compressTestStdZlib(t, data[2000:], level))...)
		got, err := io.ReadAll(compressTestReader(wire, CompressZlib))
		require.NoError(t, err)
		require.Equal(t, data, got)
	}

	var wire bytes.Buffer
	w := NewCompressedStream(compressTestRW{Writer: &wire}, CompressZlib, 0)
	_, err := w.Write(data)
	require.NoError(t, err)
	require.NoError(t, w.Flush())
	frames := compressTestSplit(t, wire.Bytes())
	require.Len(t, frames, 1)
	zr, err := stdzlib.NewReader(bytes.NewReader(frames[0].payload))
	require.NoError(t, err)
	got, err := io.ReadAll(zr)
	require.NoError(t, err)
	require.Equal(t, data, got)
	require.Len(t, got, frames[0].ulen)
}

func TestCompressZstdInterop(t *testing.T) {
	defer goleak.VerifyNone(t)
	data := compressTestText(5000)

	// A streamed frame has no content size and carries a checksum, unlike
	// ours; two frames may also share one payload.
	var streamed bytes.Buffer
	enc, err := zstd.NewWriter(&streamed, zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(true))
	require.NoError(t, err)
	_, err = enc.Write(data[:3000])
	require.NoError(t, err)
	require.NoError(t, enc.Close())
	payload := append(streamed.Bytes(), compressTestZstd(t, data[3000:])...)
	got, err := io.ReadAll(compressTestReader(compressTestFrameBytes(0, len(data), payload), CompressZstd))
	require.NoError(t, err)
	require.Equal(t, data, got)

	var wire bytes.Buffer
	w := NewCompressedStream(compressTestRW{Writer: &wire}, CompressZstd, 19)
	_, err = w.Write(data)
	require.NoError(t, err)
	require.NoError(t, w.Flush())
	frames := compressTestSplit(t, wire.Bytes())
	require.Len(t, frames, 1)
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	require.NoError(t, err)
	defer dec.Close()
	got, err = dec.DecodeAll(frames[0].payload, nil)
	require.NoError(t, err)
	require.Equal(t, data, got)
}

// The early ratio checks must not reject what real encoders produce at their
// best: a full frame of zeros.
func TestCompressExtremeRatio(t *testing.T) {
	defer goleak.VerifyNone(t)
	// Deflate's ratio is reached within the first megabyte; zstd's needs
	// the full frame.
	zeros := make([]byte, compressMaxPayload)
	zeros1M := zeros[:1<<20]
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	require.NoError(t, err)
	defer enc.Close()
	tests := []struct {
		name    string
		algo    CompressAlgorithm
		data    []byte
		payload []byte
	}{
		{"zlib", CompressZlib, zeros1M, compressTestStdZlib(t, zeros1M, stdzlib.BestCompression)},
		{"zstd", CompressZstd, zeros, enc.EncodeAll(zeros, nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Logf("ratio %d:1", len(tt.data)/len(tt.payload))
			r := compressTestReader(compressTestFrameBytes(0, len(tt.data), tt.payload), tt.algo)
			got, err := io.ReadAll(r)
			require.NoError(t, err)
			require.True(t, bytes.Equal(tt.data, got))
		})
	}
}

func TestCompressCorrupt(t *testing.T) {
	defer goleak.VerifyNone(t)
	data := compressTestText(200)
	zl := compressTestStdZlib(t, data, stdzlib.DefaultCompression)
	zs := compressTestZstd(t, data)
	badSum := bytes.Clone(zl)
	badSum[len(badSum)-1] ^= 0xff
	frame := func(ulen int, payload []byte) []byte { return compressTestFrameBytes(0, ulen, payload) }

	tests := []struct {
		name string
		algo CompressAlgorithm
		wire []byte
		want error
	}{
		{"header truncated", CompressZlib, []byte{5, 0}, io.ErrUnexpectedEOF},
		{"payload truncated", CompressZlib, frame(0, []byte("hello"))[:9], io.ErrUnexpectedEOF},
		{"zlib garbage", CompressZlib, frame(100, []byte("certainly not a zlib stream")), ErrBadCompressedFrame},
		{"zlib shorter than declared", CompressZlib, frame(len(data)+1, zl), ErrBadCompressedFrame},
		{"zlib longer than declared", CompressZlib, frame(len(data)-1, zl), ErrBadCompressedFrame},
		{"zlib bad checksum", CompressZlib, frame(len(data), badSum), ErrBadCompressedFrame},
		{"zlib stream cut", CompressZlib, frame(len(data), zl[:len(zl)-6]), ErrBadCompressedFrame},
		{"zlib impossible ratio", CompressZlib, frame(compressMaxPayload, zl), ErrBadCompressedFrame},
		{"zlib empty payload", CompressZlib, frame(10, nil), ErrBadCompressedFrame},
		{"zstd garbage", CompressZstd, frame(100, []byte("certainly not a zstd frame")), ErrBadCompressedFrame},
		{"zstd shorter than declared", CompressZstd, frame(len(data)+1, zs), ErrBadCompressedFrame},
		{"zstd longer than declared", CompressZstd, frame(len(data)-1, zs), ErrBadCompressedFrame},
		{"zstd frame cut", CompressZstd, frame(len(data), zs[:len(zs)-3]), ErrBadCompressedFrame},
		{"zstd claims 16 MiB", CompressZstd, frame(compressMaxPayload, bytes.Repeat(zs, 8)), ErrBadCompressedFrame},
		{"zlib frame on zstd stream", CompressZstd, frame(len(data), zl), ErrBadCompressedFrame},
		{"compressed frame without compression", CompressNone, frame(len(data), zl), ErrBadCompressedFrame},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := compressTestReader(tt.wire, tt.algo)
			buf := make([]byte, 1024)
			_, err := r.Read(buf)
			require.ErrorIs(t, err, tt.want)
			// The stream is out of step: the error sticks.
			_, err2 := r.Read(buf)
			require.Equal(t, err, err2)
			require.Zero(t, r.Buffered())
		})
	}
}

func TestCompressEOF(t *testing.T) {
	// A connection closed between frames is a clean EOF, after the data.
	wire := compressTestFrameBytes(0, 0, []byte("abc"))
	r := compressTestReader(wire, CompressZlib)
	got, err := io.ReadAll(r)
	require.NoError(t, err)
	require.Equal(t, []byte("abc"), got)
	_, err = r.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF)
}

func TestCompressSequence(t *testing.T) {
	var wire bytes.Buffer
	peer := bytes.NewBuffer(nil)
	s := NewCompressedStream(compressTestRW{Reader: peer, Writer: &wire}, CompressZlib, 0)
	send := func(p string) byte {
		t.Helper()
		wire.Reset()
		_, err := s.Write([]byte(p))
		require.NoError(t, err)
		require.NoError(t, s.Flush())
		frames := compressTestSplit(t, wire.Bytes())
		require.Len(t, frames, 1)
		return frames[0].seq
	}
	recv := func(seq byte, p string) {
		t.Helper()
		peer.Write(compressTestFrameBytes(seq, 0, []byte(p)))
		got := make([]byte, len(p))
		_, err := io.ReadFull(s, got)
		require.NoError(t, err)
		require.Equal(t, p, string(got))
	}

	require.Equal(t, byte(0), send("a"))
	require.Equal(t, byte(1), send("b"))
	wire.Reset()
	require.NoError(t, s.Flush()) // nothing buffered: no frame, no number used
	require.Zero(t, wire.Len())
	require.Equal(t, byte(2), send("c"))

	s.ResetSequence()
	recv(0, "query")
	require.Equal(t, byte(1), send("reply"))

	// The peer's numbering is accepted even when it skips or goes back, and
	// our reply continues it.
	s.ResetSequence()
	recv(5, "x")
	recv(3, "y")
	require.Equal(t, byte(4), send("z"))

	recv(255, "wrap")
	require.Equal(t, byte(0), send("around"))
}

type compressTestFailWriter struct{ calls int }

func (w *compressTestFailWriter) Write([]byte) (int, error) {
	w.calls++
	return 0, errors.New("connection reset")
}

func TestCompressWriteErrorSticks(t *testing.T) {
	fw := &compressTestFailWriter{}
	s := NewCompressedStream(compressTestRW{Writer: fw}, CompressZlib, 0)
	_, err := s.Write([]byte("select 1"))
	require.NoError(t, err)
	require.ErrorContains(t, s.Flush(), "connection reset")
	_, err = s.Write([]byte("x"))
	require.ErrorContains(t, err, "connection reset")
	require.ErrorContains(t, s.Flush(), "connection reset")
	require.Equal(t, 1, fw.calls)
}

func TestCompressAlgorithmString(t *testing.T) {
	require.Equal(t, "none", CompressNone.String())
	require.Equal(t, "zlib", CompressZlib.String())
	require.Equal(t, "zstd", CompressZstd.String())
	require.Equal(t, "CompressAlgorithm(9)", CompressAlgorithm(9).String())
}

func FuzzCompressedRead(f *testing.F) {
	for _, algo := range []CompressAlgorithm{CompressZlib, CompressZstd} {
		for _, data := range [][]byte{nil, []byte("hi"), compressTestText(60), compressTestText(3000)} {
			var wire bytes.Buffer
			w := NewCompressedStream(compressTestRW{Writer: &wire}, algo, 0)
			_, _ = w.Write(data)
			_, _ = w.Write([]byte("second frame, long enough to be compressed by the sender"))
			_ = w.Flush()
			f.Add(uint8(algo), wire.Bytes())
			f.Add(uint8(algo), wire.Bytes()[:wire.Len()/2])
		}
	}
	f.Add(uint8(CompressZlib), compressTestFrameBytes(0, 0xffffff, []byte{0x78, 0x9c, 0, 0}))
	f.Add(uint8(CompressZstd), compressTestFrameBytes(0, 100, []byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0}))
	f.Add(uint8(CompressNone), compressTestFrameBytes(0, 0, []byte("plain")))

	f.Fuzz(func(t *testing.T, algo uint8, wire []byte) {
		s := NewCompressedStream(compressTestRW{Reader: bytes.NewReader(wire)}, CompressAlgorithm(algo%3), 0)
		buf := make([]byte, 512)
		total := 0
		for {
			n, err := s.Read(buf)
			if n < 0 || n > len(buf) || s.Buffered() < 0 {
				t.Fatalf("Read returned %d, Buffered %d", n, s.Buffered())
			}
			total += n
			if err != nil {
				return
			}
			if total > 16*compressMaxPayload {
				t.Fatalf("%d bytes decoded from %d", total, len(wire))
			}
		}
	})
}
