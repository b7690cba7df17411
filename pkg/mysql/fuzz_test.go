package mysql

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fuzzConn is the smallest net.Conn a PacketIO accepts: reads come from r
// (io.EOF when r is nil) and writes go to w (discarded when w is nil).
type fuzzConn struct {
	r io.Reader
	w io.Writer
}

var _ net.Conn = (*fuzzConn)(nil)

func (c *fuzzConn) Read(p []byte) (int, error) {
	if c.r == nil {
		return 0, io.EOF
	}
	return c.r.Read(p)
}

func (c *fuzzConn) Write(p []byte) (int, error) {
	if c.w == nil {
		return len(p), nil
	}
	return c.w.Write(p)
}

func (c *fuzzConn) Close() error                     { return nil }
func (c *fuzzConn) LocalAddr() net.Addr              { return fuzzAddr{} }
func (c *fuzzConn) RemoteAddr() net.Addr             { return fuzzAddr{} }
func (c *fuzzConn) SetDeadline(time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(time.Time) error { return nil }

type fuzzAddr struct{}

func (fuzzAddr) Network() string { return "mem" }
func (fuzzAddr) String() string  { return "mem" }

// fuzzChunkReader hands out at most the next of sizes bytes per Read, so the
// reader under test sees packets split at arbitrary points.
type fuzzChunkReader struct {
	r     io.Reader
	sizes []int
	i     int
}

func (c *fuzzChunkReader) Read(p []byte) (int, error) {
	if len(c.sizes) > 0 {
		n := c.sizes[c.i%len(c.sizes)]
		c.i++
		if n > 0 && len(p) > n {
			p = p[:n]
		}
	}
	return c.r.Read(p)
}

// fuzzRefPacket is one logical packet as a reference decoder sees it.
type fuzzRefPacket struct {
	payload []byte
	seqs    []uint8 // sequence id of each physical packet
}

// fuzzRefDecode is a deliberately naive decoder of a packet stream, used as
// the oracle for PacketIO. maxLen bounds a logical packet (0: no bound). It
// returns the complete logical packets and the error a reader must report
// after them.
func fuzzRefDecode(wire []byte, maxLen int) ([]fuzzRefPacket, error) {
	var out []fuzzRefPacket
	for {
		if len(wire) == 0 {
			return out, io.EOF
		}
		var pk fuzzRefPacket
		for {
			if len(wire) < 4 {
				return out, io.ErrUnexpectedEOF
			}
			n := int(wire[0]) | int(wire[1])<<8 | int(wire[2])<<16
			pk.seqs = append(pk.seqs, wire[3])
			wire = wire[4:]
			if maxLen > 0 && len(pk.payload)+n > maxLen {
				return out, ErrPacketTooLarge
			}
			if len(wire) < n {
				return out, io.ErrUnexpectedEOF
			}
			pk.payload = append(pk.payload, wire[:n]...)
			wire = wire[n:]
			if n < MaxPayloadLen {
				break
			}
		}
		if pk.payload == nil {
			pk.payload = []byte{}
		}
		out = append(out, pk)
	}
}

// fuzzRefEncode frames payload independently of PacketIO.WritePacket.
func fuzzRefEncode(payload []byte, seq uint8) []byte {
	out := make([]byte, 0, len(payload)+4*(len(payload)/MaxPayloadLen+1))
	for {
		n := min(len(payload), MaxPayloadLen)
		out = append(out, byte(n), byte(n>>8), byte(n>>16), seq)
		out = append(out, payload[:n]...)
		seq++
		payload = payload[n:]
		if n < MaxPayloadLen {
			return out
		}
	}
}

func fuzzIsReadErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, ErrPacketTooLarge)
}

func fuzzHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// FuzzPacketRead feeds arbitrary bytes as a wire stream. ReadPacket must
// agree with the reference decoder, and Next/ForwardCurrent/DiscardCurrent
// must forward exactly the reference packets with the destination's ids.
func FuzzPacketRead(f *testing.F) {
	f.Add([]byte{}, uint8(0))
	f.Add([]byte{0, 0, 0, 0}, uint8(1))
	f.Add(fuzzRefEncode([]byte{ComQuery, 's', 'e', 'l', 'e', 'c', 't', ' ', '1'}, 0), uint8(0))
	f.Add(append(fuzzRefEncode([]byte("abc"), 3), fuzzRefEncode(nil, 4)...), uint8(2))
	f.Add(fuzzRefEncode(bytes.Repeat([]byte{0xfe}, 600), 9), uint8(0))
	f.Add(fuzzRefEncode(bytes.Repeat([]byte{7}, largeBufSize+1), 0), uint8(0))
	f.Add([]byte{0x01, 0x00, 0x10, 0}, uint8(1))                                // 1 MiB + 1 announced
	f.Add([]byte{0xff, 0xff, 0xff, 0, 1, 2, 3}, uint8(0))                       // max packet, truncated
	f.Add([]byte{0x01, 0x80, 0x00, 0}, uint8(0))                                // 32769 announced, no payload
	f.Add([]byte{5, 0}, uint8(0))                                               // truncated header
	f.Add([]byte{0, 0, 0x10, 0}, uint8(1))                                      // 1 MiB announced
	f.Add(fuzzHex("0100000003"+"0200000101"+"ffffff02"), uint8(3))              // mixed
	f.Add(append(fuzzRefEncode(make([]byte, 511), 0), 1, 0, 0, 1, 9), uint8(0)) // crosses the 512-byte buffer
	f.Fuzz(func(t *testing.T, data []byte, split uint8) {
		const limit = 1 << 20
		sizes := []int{int(split) + 1, 3*int(split) + 1, 4096}

		// Pass 1: ReadPacket against the reference decoder.
		want, wantErr := fuzzRefDecode(data, limit)
		src := NewPacketIO(&fuzzConn{r: &fuzzChunkReader{r: bytes.NewReader(data), sizes: sizes}})
		for i := 0; ; i++ {
			got, err := src.ReadPacket(limit)
			if err != nil {
				require.Len(t, want, i, "ReadPacket stopped early: %v", err)
				require.ErrorIs(t, err, wantErr)
				break
			}
			require.Less(t, i, len(want), "ReadPacket returned a packet the reference does not see")
			require.LessOrEqual(t, len(got), limit)
			require.Equal(t, len(want[i].payload), len(got))
			require.True(t, bytes.Equal(want[i].payload, got))
			seqs := want[i].seqs
			require.Equal(t, seqs[len(seqs)-1]+1, src.Sequence())
			if i%2 == 0 {
				src.Release()
			}
		}

		// Pass 2: Next, then forward or discard, to a capturing PacketIO.
		want, wantErr = fuzzRefDecode(data, 0)
		var sink bytes.Buffer
		dst := NewPacketIO(&fuzzConn{w: &sink})
		dst.SetSequence(split)
		src = NewPacketIO(&fuzzConn{r: &fuzzChunkReader{r: bytes.NewReader(data), sizes: sizes}})
		var forwarded [][]byte
		// What dst held after the last packet that went through whole: a
		// failed forward may leave part of a packet behind.
		var flushed int
		dstSeq := split
		for i := 0; ; i++ {
			pk, err := src.Next()
			if err == nil {
				require.LessOrEqual(t, pk.Len, MaxPayloadLen)
				require.LessOrEqual(t, len(pk.Data), pk.Len)
				if pk.Complete {
					require.Len(t, pk.Data, pk.Len)
				}
				_ = IsEOFPacket(pk)
				// Next only buffers a prefix of a large packet, so it may
				// announce one that turns out truncated; then consuming it
				// must fail.
				whole := i < len(want)
				if whole {
					require.Equal(t, want[i].seqs[0], pk.Seq)
					require.True(t, bytes.HasPrefix(want[i].payload, pk.Data))
					if pk.Complete {
						require.Len(t, want[i].payload, pk.Len)
					}
				} else {
					require.False(t, pk.Complete, "Next returned a truncated packet as complete")
				}
				if i%3 == 2 {
					err = src.DiscardCurrent()
				} else {
					err = src.ForwardCurrent(dst)
				}
				if whole {
					require.NoError(t, err)
					if i%3 != 2 {
						forwarded = append(forwarded, want[i].payload)
					}
				} else {
					require.Error(t, err)
				}
			}
			if err != nil {
				require.True(t, fuzzIsReadErr(err), "unexpected error type %T: %v", err, err)
				if len(want) > i {
					// A packet the reference decodes whole must not fail.
					require.Failf(t, "packet failed", "packet %d of %d: %v", i, len(want), err)
				}
				require.ErrorIs(t, err, wantErr)
				break
			}
			require.NoError(t, dst.Flush())
			flushed, dstSeq = sink.Len(), dst.Sequence()
			if i%2 == 1 {
				src.Release()
				dst.Release()
			}
		}
		out, outErr := fuzzRefDecode(sink.Bytes()[:flushed], 0)
		require.ErrorIs(t, outErr, io.EOF)
		require.Len(t, out, len(forwarded))
		seq := split
		for i := range out {
			require.True(t, bytes.Equal(forwarded[i], out[i].payload))
			for _, s := range out[i].seqs {
				require.Equal(t, seq, s)
				seq++
			}
		}
		require.Equal(t, seq, dstSeq)
	})
}

// FuzzHandshakeResponse checks that parsing never panics and that whatever
// parses re-encodes to an equal struct.
func FuzzHandshakeResponse(f *testing.F) {
	f.Add(hsTestMariaDBResponse)
	f.Add(hsTestMariaDBResponse[:sslRequestLen])
	f.Add(hsTestMariaDBResponse[:len(hsTestMariaDBResponse)-1])
	for _, r := range hsTestResponses() {
		f.Add(AppendHandshakeResponse(nil, r))
	}
	f.Add(AppendSSLRequest(nil, &HandshakeResponse{Capability: ClientProtocol41 | ClientSSL}))
	f.Add(make([]byte, 31))
	f.Add(append(AppendSSLRequest(nil, &HandshakeResponse{Capability: ClientProtocol41 | ClientConnectAttrs | ClientPluginAuth}), "u\x00\x00p\x00\xfe\x01"...))
	f.Add(append(AppendSSLRequest(nil, &HandshakeResponse{Capability: ClientProtocol41 | ClientSecureConnection}), "u\x00\xff"...))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseHandshakeResponse(data)
		if err != nil {
			require.ErrorIs(t, err, ErrMalformed)
			return
		}
		if r.Capability&ClientSecureConnection != 0 && r.Capability&ClientPluginAuthLenencClientData == 0 {
			require.LessOrEqual(t, len(r.AuthData), 255)
		}
		enc := AppendHandshakeResponse(nil, r)
		r2, err := ParseHandshakeResponse(enc)
		require.NoError(t, err, "re-encoded response %x does not parse", enc)
		require.Equal(t, r, r2)
		// Encoding is canonical: a second round changes nothing.
		require.Equal(t, enc, AppendHandshakeResponse(nil, r2))
		_ = IsSSLRequest(data)
	})
}

// FuzzInitialHandshake checks that parsing a greeting never panics and that a
// parsed greeting re-encodes to one that parses the same.
func FuzzInitialHandshake(f *testing.F) {
	f.Add(hsTestMariaDBGreeting)
	f.Add(hsTestMySQL8Greeting)
	f.Add(hsTestMariaDBGreeting[:40])
	f.Add(hsTestMariaDBGreeting[:len(hsTestMariaDBGreeting)-1])
	f.Add(AppendErr(nil, NewError(ErCONCount, "Too many connections")))
	f.Add([]byte{10})
	f.Add([]byte{9, 'x', 0})
	f.Add(AppendInitialHandshake(nil, &InitialHandshake{ServerVersion: "v", Salt: make([]byte, 8)}))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseInitialHandshake(data)
		if err != nil {
			var myErr *MySQLError
			if !errors.As(err, &myErr) {
				require.ErrorIs(t, err, ErrMalformed)
			}
			return
		}
		require.GreaterOrEqual(t, len(h.Salt), 8)
		enc := AppendInitialHandshake(nil, h)
		h2, err := ParseInitialHandshake(enc)
		require.NoError(t, err)
		require.Equal(t, h.ServerVersion, h2.ServerVersion)
		require.Equal(t, h.ConnID, h2.ConnID)
		require.Equal(t, h.Capability, h2.Capability)
		require.Equal(t, h.ExtCapability, h2.ExtCapability)
		require.Equal(t, h.Charset, h2.Charset)
		require.Equal(t, h.Status, h2.Status)
		require.Equal(t, h.Salt[:8], h2.Salt[:8])
		secure := h.Capability&ClientSecureConnection != 0
		plugin := h.Capability&ClientPluginAuth != 0
		// The salt's second part is self-delimiting only through the
		// length byte, which PLUGIN_AUTH carries and which holds at most
		// 255; without it the protocol fixes the part at 13 bytes.
		if secure && plugin && len(h.Salt) >= 20 && len(h.Salt) < 255 {
			require.Equal(t, h.Salt, h2.Salt)
		}
		if !secure {
			require.Len(t, h2.Salt, 8)
		}
		if plugin && (!secure || len(h.Salt) >= 20 && len(h.Salt) < 255) {
			require.Equal(t, h.AuthPlugin, h2.AuthPlugin)
		}
	})
}

// FuzzParseOK checks ParseOK (and its neighbours) on arbitrary bytes and that
// a parsed OK re-encodes to the same fields.
func FuzzParseOK(f *testing.F) {
	f.Add([]byte{0, 0, 0, 2, 0, 0, 0}, false)
	f.Add([]byte{0, 0, 0, 2, 0, 0, 0}, true)
	f.Add([]byte{0, 1, 2}, false)
	f.Add([]byte{0xfe, 0, 0, 2, 0, 0, 0}, true)
	f.Add(AppendOK(nil, OKHeader, OKInfo{AffectedRows: 1 << 40, LastInsertID: 300, Status: 3, Warnings: 1, Info: []byte("Rows matched: 1  Changed: 1  Warnings: 0")}, false), false)
	f.Add(AppendOK(nil, OKHeader, OKInfo{Status: ServerSessionStateChanged, Info: []byte("i"), SessionState: pktTestStateBlock()}, true), true)
	f.Add([]byte{0, 0xfc, 1}, false)
	f.Add([]byte{0, 0, 0xfe, 1, 2, 3}, false)
	f.Add([]byte{0, 0, 0, 0, 0x40, 0, 0, 0, 0xfd, 1, 2}, true)
	f.Add([]byte{0, 0, 0, 0, 0x40, 0, 0, 0xfb, 0xfb}, true)
	f.Add([]byte{}, true)
	f.Fuzz(func(t *testing.T, data []byte, sessionTrack bool) {
		_ = ParseErr(data)
		_, _ = ParseEOFStatus(data, false, sessionTrack)
		_, _ = ParseEOFStatus(data, true, sessionTrack)
		_, _ = SessionSchema(data)
		ok, err := ParseOK(data, sessionTrack)
		if err != nil {
			require.ErrorIs(t, err, ErrMalformed)
			return
		}
		_, _ = SessionSchema(ok.SessionState)
		enc := AppendOK(nil, data[0], ok, sessionTrack)
		ok2, err := ParseOK(enc, sessionTrack)
		require.NoError(t, err, "re-encoded OK %x does not parse", enc)
		want := ok
		if !sessionTrack {
			// Without session tracking the flag cannot be honoured, so
			// AppendOK clears it.
			want.Status &^= ServerSessionStateChanged
		}
		require.Equal(t, pktTestNormOK(want), pktTestNormOK(ok2))
	})
}
