package mysql

import (
	"bytes"
	"compress/zlib"
	"io"
	"testing"
)

// FuzzCompressedRoundTrip writes arbitrary data through a compressed stream,
// cut into writes and flushes where the fuzzer says, and reads it back with
// read sizes the fuzzer picks: the reader must return exactly what was
// written, whatever mix of stored and compressed frames the writer chose.
func FuzzCompressedRoundTrip(f *testing.F) {
	f.Add(uint8(CompressZlib), compressTestText(200), []byte{10, 0x80 | 60, 7})
	f.Add(uint8(CompressZstd), compressTestText(3000), []byte{0x80 | 255, 3})
	f.Add(uint8(CompressNone), []byte("plain"), []byte{1})
	f.Add(uint8(CompressZlib), compressTestRandom(300), []byte{0x80 | 49, 50, 0x80 | 51})
	f.Add(uint8(CompressZstd), []byte{}, []byte{})

	f.Fuzz(func(t *testing.T, algo uint8, data, cuts []byte) {
		a := CompressAlgorithm(algo % 3)
		var wire bytes.Buffer
		w := NewCompressedStream(compressTestRW{Writer: &wire}, a, 0)
		rest := data
		for i := 0; len(rest) > 0; i++ {
			n, flush := len(rest), true
			if len(cuts) > 0 {
				c := cuts[i%len(cuts)]
				n, flush = min(int(c&0x7f)+1, len(rest)), c&0x80 != 0
			}
			if _, err := w.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
			if flush {
				if err := w.Flush(); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}

		sizes := make([]int, 0, len(cuts))
		for _, c := range cuts {
			sizes = append(sizes, int(c&0x7f)+1)
		}
		r := NewCompressedStream(compressTestRW{Reader: bytes.NewReader(wire.Bytes())}, a, 0)
		var got []byte
		for i := 0; ; i++ {
			buf := make([]byte, 64)
			if len(sizes) > 0 {
				buf = buf[:min(sizes[i%len(sizes)], 64)]
			}
			n, err := r.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("read after %d of %d bytes: %v", len(got), len(data), err)
			}
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("read back %d bytes, wrote %d (differ)", len(got), len(data))
		}
	})
}

// FuzzCompressedZlibFrame checks the reader's zlib frames against the
// standard library's decoder: a frame whose payload inflates (checksum
// included) to exactly the declared length must be accepted with those
// bytes, and anything the reader accepts must be what zlib decodes.
func FuzzCompressedZlibFrame(f *testing.F) {
	z := func(data []byte) []byte {
		var b bytes.Buffer
		zw := zlib.NewWriter(&b)
		_, _ = zw.Write(data)
		_ = zw.Close()
		return b.Bytes()
	}
	f.Add(uint16(200), z(compressTestText(200)))
	f.Add(uint16(199), z(compressTestText(200)))
	f.Add(uint16(201), z(compressTestText(200)))
	f.Add(uint16(5), append(z([]byte("hello")), "trailing"...))
	f.Add(uint16(60000), []byte{0x78, 0x9c, 0x03, 0x00})
	f.Add(uint16(1), []byte{0x78, 0x9c})

	f.Fuzz(func(t *testing.T, ulen uint16, payload []byte) {
		if ulen == 0 {
			return // a stored frame, not a zlib one
		}
		r := NewCompressedStream(compressTestRW{Reader: bytes.NewReader(compressTestFrameBytes(0, int(ulen), payload))}, CompressZlib, 0)
		got := make([]byte, 0, ulen)
		var rerr error
		for {
			buf := make([]byte, 4096)
			n, err := r.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				rerr = err
				break
			}
		}
		zr, err := zlib.NewReader(bytes.NewReader(payload))
		var want []byte
		if err == nil {
			want, err = io.ReadAll(io.LimitReader(zr, int64(ulen)+1))
		}
		honest := err == nil && len(want) == int(ulen) && int(ulen) <= len(payload)*compressZlibMaxRatio
		if honest && (rerr != io.EOF || !bytes.Equal(got, want)) {
			t.Fatalf("honest frame (%d bytes): reader got %d bytes, %v", ulen, len(got), rerr)
		}
		if len(got) > 0 && !bytes.Equal(got, want) {
			t.Fatalf("reader accepted %d bytes that zlib decodes differently (%d bytes, %v)", len(got), len(want), err)
		}
	})
}
