package mysql

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"

	"github.com/switchyard-db/switchyard/test/testenv"

	"github.com/stretchr/testify/require"
)

// pioTestSizes are the payload sizes around every boundary of the codec: the
// 512-byte idle buffer, the 32 KiB pooled buffer and the 16 MiB packet limit.
var pioTestSizes = []int{
	0, 1, 511, 512, 513, 32767, 32768, 32769,
	MaxPayloadLen - 1, MaxPayloadLen, MaxPayloadLen + 1,
	32 << 20, 2 * MaxPayloadLen,
}

// pioTestPayload returns n reproducible bytes that differ with n, so a
// payload shifted by even one byte does not compare equal.
func pioTestPayload(n int) []byte {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(n))
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(seed).Read(b)
	return b
}

// pioTestText returns n bytes that compress well, like result-set rows.
func pioTestText(n int) []byte {
	b := make([]byte, 0, n+64)
	for i := 0; len(b) < n; i++ {
		b = fmt.Appendf(b, "%d\tuser%d@example.com\t%d\n", i, i%1000, i*7919%100000)
	}
	return b[:n]
}

// pioTestChunks returns the physical payload lengths of a logical packet.
func pioTestChunks(n int) []int {
	var out []int
	for {
		c := min(n, MaxPayloadLen)
		out = append(out, c)
		n -= c
		if c < MaxPayloadLen {
			return out
		}
	}
}

// pioTestReader returns a PacketIO reading wire in uneven pieces.
func pioTestReader(wire []byte) *PacketIO {
	return NewPacketIO(&fuzzConn{r: &fuzzChunkReader{r: bytes.NewReader(wire), sizes: []int{1, 7000, 3, 65536, 100}}})
}

func pioTestTCPPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		ch <- accepted{c, err}
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	a := <-ch
	require.NoError(t, a.err)
	t.Cleanup(func() {
		client.Close()
		a.c.Close()
	})
	return client, a.c
}

// pioTestGo runs fn in a goroutine. At cleanup it closes conns, which
// unblocks fn if the test failed half-way, and waits for it.
func pioTestGo(t *testing.T, fn func() error, conns ...io.Closer) <-chan error {
	t.Helper()
	ch := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ch <- fn()
	}()
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	})
	return ch
}

// smallPayloadsOnly leaves payloads over 1 MiB out: in -short mode, and
// under the race detector. They add no concurrency to what the small ones
// run, and under the race detector they took over a minute of CI's time;
// make unit runs this package without it as well, where they run.
func smallPayloadsOnly() bool { return testing.Short() || raceEnabled }

func pioTestSkipLarge(t *testing.T, n int) {
	if smallPayloadsOnly() && n > 1<<20 {
		t.Skip("large payload in -short mode or under the race detector")
	}
}

func TestPacketIOWritePacketWire(t *testing.T) {
	for _, n := range pioTestSizes {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			pioTestSkipLarge(t, n)
			payload := pioTestPayload(n)
			var sink bytes.Buffer
			w := NewPacketIO(&fuzzConn{w: &sink})
			// Start near the top so that multi-packet writes wrap.
			const start = 254
			w.SetSequence(start)
			require.NoError(t, w.WritePacket(payload))
			require.NoError(t, w.Flush())

			chunks := pioTestChunks(n)
			require.Equal(t, uint8(start+len(chunks)), w.Sequence())
			wire := sink.Bytes()
			require.Len(t, wire, n+4*len(chunks))
			off := 0
			for i, c := range chunks {
				h := wire[off : off+4]
				require.Equal(t, c, int(h[0])|int(h[1])<<8|int(h[2])<<16, "packet %d length", i)
				require.Equal(t, uint8(start+i), h[3], "packet %d sequence id", i)
				require.True(t, bytes.Equal(payload[i*MaxPayloadLen:i*MaxPayloadLen+c], wire[off+4:off+4+c]), "packet %d payload", i)
				off += 4 + c
			}
			if n%MaxPayloadLen == 0 && n > 0 {
				require.Zero(t, chunks[len(chunks)-1], "a multiple of the max length ends with an empty packet")
			}

			r := pioTestReader(wire)
			got, err := r.ReadPacket(0)
			require.NoError(t, err)
			require.Len(t, got, n)
			require.True(t, bytes.Equal(payload, got))
			require.Equal(t, w.Sequence(), r.Sequence())
			_, err = r.ReadPacket(0)
			require.ErrorIs(t, err, io.EOF)
		})
	}
}

func TestPacketIORoundTripTCP(t *testing.T) {
	client, server := pioTestTCPPair(t)
	cp, sp := NewPacketIO(client), NewPacketIO(server)
	sizes := pioTestSizes
	if smallPayloadsOnly() {
		sizes = sizes[:8]
	}
	errc := pioTestGo(t, func() error {
		for _, n := range sizes {
			// Every packet is a new command.
			cp.ResetSequence()
			if err := cp.WritePacket(pioTestPayload(n)); err != nil {
				return err
			}
			if err := cp.Flush(); err != nil {
				return err
			}
			cp.Release()
		}
		return nil
	}, client, server)
	for _, n := range sizes {
		got, err := sp.ReadPacket(0)
		require.NoError(t, err, "size %d", n)
		require.Len(t, got, n)
		require.True(t, bytes.Equal(pioTestPayload(n), got), "size %d", n)
		require.Equal(t, uint8(len(pioTestChunks(n))), sp.Sequence(), "size %d", n)
		sp.Release()
	}
	require.False(t, sp.Buffered())
	require.NoError(t, <-errc)
}

func TestPacketIONextForwardDiscard(t *testing.T) {
	const srcSeq, dstSeq = 7, 254
	for _, n := range pioTestSizes {
		for _, discard := range []bool{false, true} {
			name := fmt.Sprintf("%d/forward", n)
			if discard {
				name = fmt.Sprintf("%d/discard", n)
			}
			t.Run(name, func(t *testing.T) {
				pioTestSkipLarge(t, n)
				payload := pioTestPayload(n)
				k := len(pioTestChunks(n))
				wire := fuzzRefEncode(payload, srcSeq)
				wire = append(wire, fuzzRefEncode([]byte("tail"), uint8(srcSeq+k))...)
				src := pioTestReader(wire)
				var sink bytes.Buffer
				dst := NewPacketIO(&fuzzConn{w: &sink})
				dst.SetSequence(dstSeq)

				pk, err := src.Next()
				require.NoError(t, err)
				require.Equal(t, min(n, MaxPayloadLen), pk.Len)
				require.Equal(t, uint8(srcSeq), pk.Seq)
				if n <= largeBufSize {
					require.True(t, pk.Complete)
					require.True(t, bytes.Equal(payload, pk.Data))
				} else {
					// Too large to buffer: only a prefix is available.
					require.False(t, pk.Complete)
					require.Equal(t, payload[:64], pk.Data)
				}
				require.True(t, src.Buffered() || n == 0)

				if discard {
					require.NoError(t, src.DiscardCurrent())
					require.NoError(t, dst.Flush())
					require.Zero(t, sink.Len())
					require.Equal(t, uint8(dstSeq), dst.Sequence())
				} else {
					require.NoError(t, src.ForwardCurrent(dst))
					require.NoError(t, dst.Flush())
					want := fuzzRefEncode(payload, dstSeq)
					require.Equal(t, len(want), sink.Len())
					require.True(t, bytes.Equal(want, sink.Bytes()), "forwarded bytes differ")
					require.Equal(t, uint8(dstSeq+k), dst.Sequence())
				}
				require.Equal(t, uint8(srcSeq+k), src.Sequence())

				// The stream stays in step after the packet.
				pk, err = src.Next()
				require.NoError(t, err)
				require.True(t, pk.Complete)
				require.Equal(t, "tail", string(pk.Data))
				require.Equal(t, uint8(srcSeq+k), pk.Seq)
				require.NoError(t, src.DiscardCurrent())
				_, err = src.Next()
				require.ErrorIs(t, err, io.EOF)
			})
		}
	}
}

// TestPacketIOForwardTCP forwards client → proxy → backend over two real
// connections, the way a session relays commands.
func TestPacketIOForwardTCP(t *testing.T) {
	c1, s1 := pioTestTCPPair(t)
	c2, s2 := pioTestTCPPair(t)
	client, front, back, backend := NewPacketIO(c1), NewPacketIO(s1), NewPacketIO(c2), NewPacketIO(s2)
	sizes := pioTestSizes
	if smallPayloadsOnly() {
		sizes = sizes[:8]
	}
	clientErr := pioTestGo(t, func() error {
		for _, n := range sizes {
			client.SetSequence(5)
			if err := client.WritePacket(pioTestPayload(n)); err != nil {
				return err
			}
			if err := client.Flush(); err != nil {
				return err
			}
		}
		return nil
	}, c1, s1, c2, s2)
	proxyErr := pioTestGo(t, func() error {
		for range sizes {
			pk, err := front.Next()
			if err != nil {
				return err
			}
			if pk.Seq != 5 {
				return fmt.Errorf("front saw sequence id %d", pk.Seq)
			}
			back.ResetSequence()
			if err := front.ForwardCurrent(back); err != nil {
				return err
			}
			if err := back.Flush(); err != nil {
				return err
			}
			front.Release()
			back.Release()
		}
		return nil
	}, c1, s1, c2, s2)
	for _, n := range sizes {
		got, err := backend.ReadPacket(0)
		require.NoError(t, err, "size %d", n)
		require.Len(t, got, n)
		require.True(t, bytes.Equal(pioTestPayload(n), got), "size %d", n)
		// The backend sees the proxy's numbering, which starts at 0.
		require.Equal(t, uint8(len(pioTestChunks(n))), backend.Sequence(), "size %d", n)
	}
	require.NoError(t, <-clientErr)
	require.NoError(t, <-proxyErr)
}

func TestPacketIONextMisuse(t *testing.T) {
	p := pioTestReader(append(fuzzRefEncode([]byte("a"), 0), fuzzRefEncode([]byte("b"), 1)...))
	require.Error(t, p.DiscardCurrent(), "nothing announced yet")
	require.Error(t, p.ForwardCurrent(NewPacketIO(&fuzzConn{})))
	pk, err := p.Next()
	require.NoError(t, err)
	require.Equal(t, byte('a'), pk.First())
	_, err = p.Next()
	require.Error(t, err, "Next twice without consuming")
	require.NoError(t, p.DiscardCurrent())
	require.Error(t, p.DiscardCurrent(), "already consumed")
	pk, err = p.Next()
	require.NoError(t, err)
	require.Equal(t, "b", string(pk.Data))
	require.Zero(t, Packet{}.First())
}

func TestPacketIOBuffered(t *testing.T) {
	wire := append(fuzzRefEncode([]byte("first"), 0), fuzzRefEncode([]byte("second"), 1)...)
	p := NewPacketIO(&fuzzConn{r: bytes.NewReader(wire)})
	require.False(t, p.Buffered(), "nothing read yet")
	got, err := p.ReadPacket(0)
	require.NoError(t, err)
	require.Equal(t, "first", string(got))
	require.True(t, p.Buffered(), "the second packet arrived with the first")
	pk, err := p.Next()
	require.NoError(t, err)
	require.Equal(t, "second", string(pk.Data))
	require.NoError(t, p.DiscardCurrent())
	require.False(t, p.Buffered())
}

func TestPacketIORelease(t *testing.T) {
	var in, out bytes.Buffer
	p := NewPacketIO(&fuzzConn{r: &in, w: &out})
	p.Release() // nothing held: no-op
	require.Nil(t, p.rd.pooled)

	big := pioTestPayload(40000)
	in.Write(fuzzRefEncode(big, 0))
	in.Write(fuzzRefEncode([]byte("select 1"), 1))
	got, err := p.ReadPacket(0)
	require.NoError(t, err)
	require.True(t, bytes.Equal(big, got))
	require.NotNil(t, p.rd.pooled, "a large packet needs the pooled buffer")

	// The next packet is already buffered: Release must keep it.
	require.True(t, p.Buffered())
	p.Release()
	require.NotNil(t, p.rd.pooled)
	got, err = p.ReadPacket(0)
	require.NoError(t, err)
	require.Equal(t, "select 1", string(got))

	// Drained: the buffer goes back, and the reader holds none.
	require.False(t, p.Buffered())
	p.Release()
	require.Nil(t, p.rd.pooled)
	require.Nil(t, p.rd.buf)
	require.False(t, p.HoldsPooledBuffers())

	// The reader works again, for small and large packets, after taking a
	// buffer another connection may have used.
	in.Write(fuzzRefEncode([]byte("ping"), 0))
	got, err = p.ReadPacket(0)
	require.NoError(t, err)
	require.Equal(t, "ping", string(got))
	in.Write(fuzzRefEncode(big[:33000], 0))
	got, err = p.ReadPacket(0)
	require.NoError(t, err)
	require.True(t, bytes.Equal(big[:33000], got))
	p.Release()
	require.Nil(t, p.rd.pooled)

	// Release between Next and ForwardCurrent must not drop the announced
	// payload, which Packet.Data points into.
	in.Write(fuzzRefEncode(big[:20000], 3))
	pk, err := p.Next()
	require.NoError(t, err)
	p.Release()
	require.True(t, bytes.Equal(big[:20000], pk.Data))
	var fwd bytes.Buffer
	dst := NewPacketIO(&fuzzConn{w: &fwd})
	require.NoError(t, p.ForwardCurrent(dst))
	require.NoError(t, dst.Flush())
	require.True(t, bytes.Equal(fuzzRefEncode(big[:20000], 0), fwd.Bytes()))

	// Writer: unflushed bytes keep the buffer.
	require.NoError(t, p.WritePacket([]byte("OK")))
	p.Release()
	require.NotNil(t, p.wr.pooled)
	require.Zero(t, out.Len())
	require.NoError(t, p.Flush())
	require.Equal(t, fuzzRefEncode([]byte("OK"), 4), out.Bytes())
	p.Release()
	require.Nil(t, p.wr.pooled)
	require.NoError(t, p.WritePacket([]byte("again")))
	require.NoError(t, p.Flush())
	require.Equal(t, fuzzRefEncode([]byte("again"), 5), out.Bytes()[len(fuzzRefEncode([]byte("OK"), 4)):])
}

func TestPacketIOReadPacketMaxLen(t *testing.T) {
	small := pioTestPayload(100)
	p := pioTestReader(fuzzRefEncode(small, 0))
	_, err := p.ReadPacket(99)
	require.ErrorIs(t, err, ErrPacketTooLarge)

	p = pioTestReader(fuzzRefEncode(small, 0))
	got, err := p.ReadPacket(100)
	require.NoError(t, err)
	require.Equal(t, small, got)

	// The limit applies to the joined packet.
	if !smallPayloadsOnly() {
		big := pioTestPayload(MaxPayloadLen + 5)
		p = pioTestReader(fuzzRefEncode(big, 0))
		_, err = p.ReadPacket(MaxPayloadLen + 4)
		require.ErrorIs(t, err, ErrPacketTooLarge)
		p = pioTestReader(fuzzRefEncode(big, 0))
		got, err = p.ReadPacket(MaxPayloadLen + 5)
		require.NoError(t, err)
		require.True(t, bytes.Equal(big, got))
	}

	// The length is checked from the header, before waiting for (or
	// allocating) the payload.
	p = pioTestReader([]byte{0xff, 0xff, 0xff, 0})
	_, err = p.ReadPacket(1 << 20)
	require.ErrorIs(t, err, ErrPacketTooLarge)
}

func TestPacketIOTruncated(t *testing.T) {
	maxPacket := fuzzRefEncode(make([]byte, MaxPayloadLen), 0)[:4+MaxPayloadLen]
	tests := []struct {
		name    string
		wire    []byte
		wantErr error
	}{
		{"empty stream", nil, io.EOF},
		{"partial header", []byte{5, 0}, io.ErrUnexpectedEOF},
		{"partial small payload", append([]byte{10, 0, 0, 0}, "abcde"...), io.ErrUnexpectedEOF},
		{"header only", []byte{10, 0, 0, 0}, io.ErrUnexpectedEOF},
		{"partial large payload", append([]byte{0x40, 0x9c, 0, 0}, make([]byte, 100)...), io.ErrUnexpectedEOF},
		{"large payload shorter than the prefix", append([]byte{0x40, 0x9c, 0, 0}, make([]byte, 10)...), io.ErrUnexpectedEOF},
		{"continuation header partial", append(bytes.Clone(maxPacket), 0, 0), io.ErrUnexpectedEOF},
		{"continuation payload partial", append(bytes.Clone(maxPacket), 10, 0, 0, 1, 'a'), io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pioTestReader(tt.wire).ReadPacket(0)
			require.ErrorIs(t, err, tt.wantErr, "ReadPacket")

			for _, forward := range []bool{false, true} {
				p := pioTestReader(tt.wire)
				_, err := p.Next()
				if err == nil {
					if forward {
						err = p.ForwardCurrent(NewPacketIO(&fuzzConn{}))
					} else {
						err = p.DiscardCurrent()
					}
				}
				require.ErrorIs(t, err, tt.wantErr, "Next, forward=%v", forward)
			}
		})
	}
}

// TestPacketIOTruncatedAfterMaxPacket: a stream that ends right after a
// 16 MiB packet has lost the continuation the header promised, so the
// logical packet is truncated. Reporting io.EOF would read as a clean close
// between packets.
func TestPacketIOTruncatedAfterMaxPacket(t *testing.T) {
	pioTestSkipLarge(t, MaxPayloadLen)
	wire := fuzzRefEncode(make([]byte, MaxPayloadLen), 0)
	wire = wire[:len(wire)-4] // drop the empty trailer
	_, err := pioTestReader(wire).ReadPacket(0)
	require.ErrorIs(t, err, io.ErrUnexpectedEOF, "ReadPacket")

	p := pioTestReader(wire)
	_, err = p.Next()
	require.NoError(t, err)
	err = p.DiscardCurrent()
	require.ErrorIs(t, err, io.ErrUnexpectedEOF, "DiscardCurrent")
}

func TestPacketIOSequence(t *testing.T) {
	var sink bytes.Buffer
	in := append(fuzzRefEncode([]byte{ComQuery, '1'}, 0), fuzzRefEncode([]byte{ComPing}, 0)...)
	p := NewPacketIO(&fuzzConn{r: bytes.NewReader(in), w: &sink})
	require.Zero(t, p.Sequence())

	// A reply continues the request's numbering.
	_, err := p.ReadPacket(0)
	require.NoError(t, err)
	require.Equal(t, uint8(1), p.Sequence())
	require.NoError(t, p.WritePacket([]byte("r1")))
	require.NoError(t, p.WritePacket([]byte("r2")))
	require.Equal(t, uint8(3), p.Sequence())

	// A new command starts at 0 again.
	p.ResetSequence()
	require.Zero(t, p.Sequence())
	require.NoError(t, p.WritePacket([]byte("r3")))
	p.SetSequence(255)
	require.NoError(t, p.WritePacket([]byte("r4")))
	require.Zero(t, p.Sequence(), "ids wrap")
	require.NoError(t, p.Flush())

	want := fuzzRefEncode([]byte("r1"), 1)
	want = append(want, fuzzRefEncode([]byte("r2"), 2)...)
	want = append(want, fuzzRefEncode([]byte("r3"), 0)...)
	want = append(want, fuzzRefEncode([]byte("r4"), 255)...)
	require.Equal(t, want, sink.Bytes())

	pk, err := p.Next()
	require.NoError(t, err)
	require.Zero(t, pk.Seq)
	require.Equal(t, uint8(1), p.Sequence())
}

func TestPacketIOWriteRaw(t *testing.T) {
	var sink bytes.Buffer
	p := NewPacketIO(&fuzzConn{w: &sink})
	require.NoError(t, p.WriteRaw([]byte("PROXY")))
	require.NoError(t, p.WritePacket([]byte("x")))
	require.NoError(t, p.Flush())
	require.Equal(t, append([]byte("PROXY"), fuzzRefEncode([]byte("x"), 0)...), sink.Bytes())
	require.Equal(t, uint8(1), p.Sequence(), "raw bytes take no sequence id")
}

// pioTestTLSConfigs returns a server config and a client config that trusts it, from
// testenv's CA (one certificate set per test, generated in memory).
func pioTestTLSConfigs(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	c := testenv.NewCerts(t, "")
	client = c.ClientTLSConfig()
	client.ServerName = "127.0.0.1"
	return c.ServerTLSConfig(), client
}

// pioTestEcho has the server side read each payload and send it back.
func pioTestEcho(p *PacketIO, sizes []int, gen func(int) []byte) error {
	for _, n := range sizes {
		got, err := p.ReadPacket(0)
		if err != nil {
			return fmt.Errorf("size %d: %w", n, err)
		}
		if !bytes.Equal(gen(n), got) {
			return fmt.Errorf("size %d: payload differs (got %d bytes)", n, len(got))
		}
		if err := p.WritePacket(got); err != nil {
			return err
		}
		if err := p.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// pioTestRequest sends each payload as a new command and checks the echo.
func pioTestRequest(t *testing.T, p *PacketIO, sizes []int, gen func(int) []byte) {
	t.Helper()
	for _, n := range sizes {
		want := gen(n)
		p.ResetSequence()
		require.NoError(t, p.WritePacket(want))
		require.NoError(t, p.Flush())
		got, err := p.ReadPacket(0)
		require.NoError(t, err, "size %d", n)
		require.Len(t, got, n)
		require.True(t, bytes.Equal(want, got), "size %d", n)
		p.Release()
	}
}

func TestPacketIOTLS(t *testing.T) {
	serverCfg, clientCfg := pioTestTLSConfigs(t)
	c, s := pioTestTCPPair(t)
	cp, sp := NewPacketIO(c), NewPacketIO(s)
	sizes := []int{0, 1, 511, 513, 32769, MaxPayloadLen + 1}
	if smallPayloadsOnly() {
		sizes = sizes[:5]
	}

	serverErr := pioTestGo(t, func() error {
		req, err := sp.ReadPacket(sslRequestLen)
		if err != nil {
			return err
		}
		if !IsSSLRequest(req) {
			return errors.New("first packet is not an SSLRequest")
		}
		if err := sp.ServerTLSHandshake(serverCfg); err != nil {
			return err
		}
		resp, err := sp.ReadPacket(1 << 16)
		if err != nil {
			return err
		}
		if sp.Sequence() != 3 {
			return fmt.Errorf("response has sequence id %d, want 2", sp.Sequence()-1)
		}
		if _, err := ParseHandshakeResponse(resp); err != nil {
			return err
		}
		if err := sp.WritePacket(AppendOK(nil, OKHeader, OKInfo{Status: ServerStatusAutocommit}, false)); err != nil {
			return err
		}
		if err := sp.Flush(); err != nil {
			return err
		}
		return pioTestEcho(sp, sizes, pioTestPayload)
	}, c, s)

	cp.SetSequence(1)
	hr := &HandshakeResponse{
		Capability: ClientProtocol41 | ClientSSL | ClientSecureConnection | ClientPluginAuth,
		MaxPacket:  1 << 24,
		Charset:    DefaultCharset,
		User:       "alice",
		AuthPlugin: AuthUnknownPlugin,
	}
	require.NoError(t, cp.WritePacket(AppendSSLRequest(nil, hr)))
	require.NoError(t, cp.Flush())
	require.False(t, cp.IsTLS())
	require.Nil(t, cp.TLSState())
	require.NoError(t, cp.ClientTLSHandshake(clientCfg))
	require.True(t, cp.IsTLS())
	st := cp.TLSState()
	require.NotNil(t, st)
	require.True(t, st.HandshakeComplete)
	require.GreaterOrEqual(t, st.Version, uint16(tls.VersionTLS12))
	require.NotSame(t, cp.RawConn(), cp.Conn())
	require.Same(t, c, cp.RawConn())

	require.NoError(t, cp.WritePacket(AppendHandshakeResponse(nil, hr)))
	require.NoError(t, cp.Flush())
	ok, err := cp.ReadPacket(1 << 16)
	require.NoError(t, err)
	require.Equal(t, OKHeader, ok[0])

	pioTestRequest(t, cp, sizes, pioTestPayload)
	require.NoError(t, <-serverErr)
	require.True(t, sp.IsTLS())
}

// pioTestCoalesceConn sends pending in front of the first write, so that a
// packet and the TLS ClientHello after it leave in one segment.
type pioTestCoalesceConn struct {
	net.Conn
	pending []byte
}

func (c *pioTestCoalesceConn) Write(b []byte) (int, error) {
	if c.pending != nil {
		_, err := c.Conn.Write(append(c.pending, b...))
		c.pending = nil
		if err != nil {
			return 0, err
		}
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// TestPacketIOTLSPipelinedClientHello: clients send the ClientHello right
// behind the SSLRequest without waiting, so the server's read buffer may
// hold the start of the TLS handshake when it upgrades.
func TestPacketIOTLSPipelinedClientHello(t *testing.T) {
	serverCfg, clientCfg := pioTestTLSConfigs(t)
	c, s := pioTestTCPPair(t)
	sp := NewPacketIO(s)
	ssl := fuzzRefEncode(AppendSSLRequest(nil, &HandshakeResponse{Capability: ClientProtocol41 | ClientSSL}), 1)
	tc := tls.Client(&pioTestCoalesceConn{Conn: c, pending: ssl}, clientCfg)
	cp := NewPacketIO(tc)
	sizes := []int{0, 600, 40000}

	clientErr := pioTestGo(t, func() error {
		if err := tc.Handshake(); err != nil {
			return err
		}
		return pioTestEcho(cp, sizes, pioTestPayload)
	}, c, s)

	req, err := sp.ReadPacket(sslRequestLen)
	require.NoError(t, err)
	require.True(t, IsSSLRequest(req))
	require.True(t, sp.Buffered(), "the ClientHello arrived with the SSLRequest")
	require.NoError(t, sp.ServerTLSHandshake(serverCfg))
	require.True(t, sp.IsTLS())
	require.False(t, sp.Buffered())
	pioTestRequest(t, sp, sizes, pioTestPayload)
	require.NoError(t, <-clientErr)
}

func TestPacketIOTLSPlaintextAfterSSLRequest(t *testing.T) {
	serverCfg, _ := pioTestTLSConfigs(t)
	wire := fuzzRefEncode(AppendSSLRequest(nil, &HandshakeResponse{Capability: ClientProtocol41 | ClientSSL}), 1)
	wire = append(wire, fuzzRefEncode([]byte("plaintext"), 2)...)
	p := NewPacketIO(&fuzzConn{r: bytes.NewReader(wire)})
	_, err := p.ReadPacket(sslRequestLen)
	require.NoError(t, err)
	require.Error(t, p.ServerTLSHandshake(serverCfg))
	require.False(t, p.IsTLS())
}

func TestPacketIOSetCompressionRefusesBufferedData(t *testing.T) {
	// Bytes read before the switch were meant uncompressed or compressed;
	// the codec cannot tell, so it refuses rather than guess.
	wire := append(fuzzRefEncode([]byte("a"), 0), fuzzRefEncode([]byte("b"), 1)...)
	p := NewPacketIO(&fuzzConn{r: bytes.NewReader(wire)})
	_, err := p.ReadPacket(0)
	require.NoError(t, err)
	require.Error(t, p.SetCompression(CompressZlib, 0))
	require.NoError(t, p.SetCompression(CompressNone, 0), "no compression is always fine")
	got, err := p.ReadPacket(0)
	require.NoError(t, err)
	require.Equal(t, "b", string(got))
}

// pioTestCountingConn counts the bytes read from the wire.
type pioTestCountingConn struct {
	net.Conn
	n int
}

func (c *pioTestCountingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n += n
	return n, err
}

func TestPacketIOCompression(t *testing.T) {
	sizes := []int{0, 1, 49, 50, 513, 32769, 1 << 20, 20 << 20}
	if smallPayloadsOnly() {
		sizes = sizes[:6]
	}
	for _, algo := range []CompressAlgorithm{CompressZlib, CompressZstd} {
		t.Run(algo.String(), func(t *testing.T) {
			c, s := pioTestTCPPair(t)
			counted := &pioTestCountingConn{Conn: s}
			cp, sp := NewPacketIO(c), NewPacketIO(counted)

			var wireIn int
			serverErr := pioTestGo(t, func() error {
				// Authentication ends with an uncompressed OK; both ends
				// switch right after it.
				if err := sp.WritePacket(AppendOK(nil, OKHeader, OKInfo{Status: ServerStatusAutocommit}, false)); err != nil {
					return err
				}
				if err := sp.Flush(); err != nil {
					return err
				}
				if err := sp.SetCompression(algo, 0); err != nil {
					return err
				}
				before := counted.n
				err := pioTestEcho(sp, sizes, pioTestText)
				wireIn = counted.n - before
				return err
			}, c, s)

			ok, err := cp.ReadPacket(1 << 16)
			require.NoError(t, err)
			_, err = ParseOK(ok, false)
			require.NoError(t, err)
			require.NoError(t, cp.SetCompression(algo, 3))
			pioTestRequest(t, cp, sizes, pioTestText)
			require.NoError(t, <-serverErr)

			total := 0
			for _, n := range sizes {
				total += n
			}
			require.Less(t, wireIn, total/2, "text should shrink on the wire")
		})
	}
}

func TestPacketIOCompressionRandomPayloads(t *testing.T) {
	// Incompressible data is sent in stored frames and must survive too.
	sizes := []int{0, 100, 32769, MaxPayloadLen + 1}
	if smallPayloadsOnly() {
		sizes = sizes[:3]
	}
	c, s := pioTestTCPPair(t)
	cp, sp := NewPacketIO(c), NewPacketIO(s)
	require.NoError(t, cp.SetCompression(CompressZstd, 1))
	require.NoError(t, sp.SetCompression(CompressZstd, 1))
	serverErr := pioTestGo(t, func() error { return pioTestEcho(sp, sizes, pioTestPayload) }, c, s)
	pioTestRequest(t, cp, sizes, pioTestPayload)
	require.NoError(t, <-serverErr)
}
