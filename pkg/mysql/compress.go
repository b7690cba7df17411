package mysql

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
)

// CompressAlgorithm is the compression negotiated for the compressed protocol.
type CompressAlgorithm int

const (
	// CompressNone means no compression was negotiated.
	CompressNone CompressAlgorithm = iota
	// CompressZlib is CLIENT_COMPRESS.
	CompressZlib
	// CompressZstd is CLIENT_ZSTD_COMPRESSION_ALGORITHM (MySQL 8.0.18+).
	CompressZstd
)

// String returns the name MySQL uses for the algorithm.
func (a CompressAlgorithm) String() string {
	switch a {
	case CompressNone:
		return "none"
	case CompressZlib:
		return "zlib"
	case CompressZstd:
		return "zstd"
	}
	return fmt.Sprintf("CompressAlgorithm(%d)", int(a))
}

// ErrBadCompressedFrame reports a compressed-protocol frame that cannot be
// decoded. The stream is out of step afterwards, so the connection must close.
var ErrBadCompressedFrame = errors.New("malformed compressed packet")

const (
	compressHeaderLen = 7
	// compressMaxPayload is the largest length a 3-byte header field holds.
	compressMaxPayload = 1<<24 - 1
	// compressMinLen is MySQL's MIN_COMPRESS_LENGTH: shorter payloads rarely
	// shrink, so senders store them as they are.
	compressMinLen = 50
	// compressIdleBufCap bounds what a stream keeps between commands, so
	// thousands of idle sessions do not pin the buffers of one large result.
	compressIdleBufCap = 64 << 10
	// compressReadStep is how much the compressed-payload buffer grows per read,
	// so a header that merely claims 16 MiB does not allocate 16 MiB up front.
	compressReadStep = 64 << 10
	// compressZlibMaxRatio is deflate's worst-case expansion (about 1032:1).
	// A zlib frame claiming more is lying; rejecting it early avoids
	// allocating the claimed length.
	compressZlibMaxRatio = 1032
	// compressZstdMaxRatio: a zstd block yields at most 128 KiB and needs at
	// least 4 bytes (header plus one byte, as in an RLE block).
	compressZstdMaxRatio = (128 << 10) / 4
	// compressDefaultZstdLevel is MySQL's default zstd level.
	compressDefaultZstdLevel = 3
)

// CompressedStream implements the MySQL compressed protocol. It sits between
// the packet reader/writer and the raw (or TLS) connection: Read returns the
// decompressed inner packet stream, Write buffers inner bytes and Flush sends
// them as frames.
//
// A stream is used by one goroutine at a time: reads and writes share the
// compressed sequence id, as in MySQL, where replies continue the sequence of
// the request.
type CompressedStream struct {
	rw        io.ReadWriter
	algo      CompressAlgorithm
	zstdLevel int
	seq       uint8

	hdr  [compressHeaderLen]byte
	in   []byte // compressed payload of the frame being decoded
	rbuf []byte // decompressed bytes; rbuf[rpos:] not yet returned by Read
	rpos int
	rerr error

	wbuf []byte // inner bytes written since the last frame
	out  []byte // the frame being sent
	werr error
}

// NewCompressedStream wraps rw. zstdLevel (1..22, 0 = MySQL's default 3) only
// matters for CompressZstd. With CompressNone every frame is sent stored and
// receiving a compressed frame is an error.
func NewCompressedStream(rw io.ReadWriter, algo CompressAlgorithm, zstdLevel int) *CompressedStream {
	if zstdLevel <= 0 {
		zstdLevel = compressDefaultZstdLevel
	}
	return &CompressedStream{rw: rw, algo: algo, zstdLevel: zstdLevel}
}

// ResetSequence restarts the compressed sequence at 0; call it whenever the
// inner sequence restarts, i.e. at each new command.
func (c *CompressedStream) ResetSequence() { c.seq = 0 }

// Buffered returns how many decompressed bytes Read can return without
// touching the connection.
func (c *CompressedStream) Buffered() int { return len(c.rbuf) - c.rpos }

// Read returns decompressed inner bytes. It reads frames until it has at least
// one byte, and never blocks for more once it has some; what does not fit p is
// kept for the next Read.
func (c *CompressedStream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for c.rpos == len(c.rbuf) {
		if c.rerr != nil {
			return 0, c.rerr
		}
		if err := c.readFrame(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.rbuf[c.rpos:])
	c.rpos += n
	if c.rpos == len(c.rbuf) {
		c.rpos = 0
		c.rbuf = compressKeepIdle(c.rbuf)
	}
	return n, nil
}

func (c *CompressedStream) readFrame() error {
	n, err := io.ReadFull(c.rw, c.hdr[:])
	if err != nil {
		if n == 0 {
			// Nothing of the frame was consumed, so a clean EOF stays io.EOF
			// and a read deadline leaves the stream usable.
			return err
		}
		return c.failRead(fmt.Errorf("read compressed packet header: %w", err))
	}
	clen := uint24(c.hdr[0:3])
	ulen := uint24(c.hdr[4:7])
	// The peer's numbering wins: our replies must continue it.
	c.seq = c.hdr[3] + 1
	if ulen != 0 {
		if err := c.checkDeclared(clen, ulen); err != nil {
			return c.failRead(err)
		}
	}

	c.in, err = compressReadN(c.rw, c.in[:0], clen)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return c.failRead(fmt.Errorf("read compressed packet payload: %w", err))
	}
	c.rpos = 0
	if ulen == 0 {
		// Stored frame: the payload is the data; swap instead of copying.
		c.rbuf, c.in = c.in, c.rbuf[:0]
	} else {
		// The header's 3-byte field bounds this allocation to 16 MiB.
		c.rbuf = slices.Grow(c.rbuf[:0], ulen)[:ulen]
		if err := c.decompress(c.rbuf, c.in); err != nil {
			c.rbuf = c.rbuf[:0]
			return c.failRead(fmt.Errorf("%w: %s: %w", ErrBadCompressedFrame, c.algo, err))
		}
	}
	c.in = compressKeepIdle(c.in)
	return nil
}

// checkDeclared rejects headers that cannot be honest before anything is
// allocated for them. No length check against 16 MiB is needed: the 3-byte
// field cannot express more.
func (c *CompressedStream) checkDeclared(clen, ulen int) error {
	switch {
	case c.algo != CompressZlib && c.algo != CompressZstd:
		return fmt.Errorf("%w: compressed frame but compression is %s", ErrBadCompressedFrame, c.algo)
	case c.algo == CompressZlib && ulen > clen*compressZlibMaxRatio,
		c.algo == CompressZstd && ulen > clen*compressZstdMaxRatio:
		return fmt.Errorf("%w: %d %s bytes cannot expand to the declared %d", ErrBadCompressedFrame, clen, c.algo, ulen)
	}
	return nil
}

func (c *CompressedStream) decompress(dst, src []byte) error {
	if c.algo == CompressZstd {
		return compressZstdDecode(dst, src)
	}
	return compressZlibDecode(dst, src)
}

func (c *CompressedStream) failRead(err error) error {
	c.rerr = err
	return err
}

// Write buffers inner bytes until Flush. Every full 16 MiB is sent as a frame
// right away, so a huge packet does not sit in memory whole.
func (c *CompressedStream) Write(p []byte) (int, error) {
	if c.werr != nil {
		return 0, c.werr
	}
	written := 0
	for len(p) > 0 {
		if len(c.wbuf) == 0 && len(p) >= compressMaxPayload {
			if err := c.writeFrame(p[:compressMaxPayload]); err != nil {
				return written, err
			}
			p = p[compressMaxPayload:]
			written += compressMaxPayload
			continue
		}
		n := min(len(p), compressMaxPayload-len(c.wbuf))
		c.wbuf = append(c.wbuf, p[:n]...)
		p = p[n:]
		written += n
		if len(c.wbuf) == compressMaxPayload {
			err := c.writeFrame(c.wbuf)
			c.wbuf = c.wbuf[:0]
			if err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// Flush sends what was written since the last frame as one frame.
func (c *CompressedStream) Flush() error {
	if c.werr != nil {
		return c.werr
	}
	var err error
	if len(c.wbuf) > 0 {
		err = c.writeFrame(c.wbuf)
	}
	c.wbuf = compressKeepIdle(c.wbuf[:0])
	return err
}

func (c *CompressedStream) writeFrame(chunk []byte) error {
	out := append(c.out[:0], make([]byte, compressHeaderLen)...)
	ulen := 0
	if len(chunk) >= compressMinLen && (c.algo == CompressZlib || c.algo == CompressZstd) {
		var err error
		if c.algo == CompressZstd {
			out, err = compressZstdAppend(out, chunk, c.zstdLevel)
		} else {
			out, err = compressZlibAppend(out, chunk)
		}
		if err != nil {
			c.werr = fmt.Errorf("%s compress: %w", c.algo, err)
			return c.werr
		}
		if len(out)-compressHeaderLen < len(chunk) {
			ulen = len(chunk)
		} else {
			// Incompressible: storing is smaller, and keeps the payload
			// within the 3-byte length.
			out = out[:compressHeaderLen]
		}
	}
	if ulen == 0 {
		out = append(out, chunk...)
	}
	putUint24(out[0:3], len(out)-compressHeaderLen)
	out[3] = c.seq
	putUint24(out[4:7], ulen)
	c.seq++
	_, err := c.rw.Write(out)
	c.out = compressKeepIdle(out[:0])
	if err != nil {
		c.werr = fmt.Errorf("write compressed packet: %w", err)
		return c.werr
	}
	return nil
}

// compressReadN reads exactly n bytes into buf[:0], growing it as data
// arrives rather than trusting n up front.
func compressReadN(r io.Reader, buf []byte, n int) ([]byte, error) {
	buf = buf[:0]
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(n-len(buf), max(len(buf), compressReadStep)))
		}
		m, err := io.ReadFull(r, buf[len(buf):min(n, cap(buf))])
		buf = buf[:len(buf)+m]
		if err != nil {
			if err == io.EOF && len(buf) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return buf, err
		}
	}
	return buf, nil
}

// compressKeepIdle returns b emptied, or nil when it is too large to keep.
func compressKeepIdle(b []byte) []byte {
	if cap(b) > compressIdleBufCap {
		return nil
	}
	return b[:0]
}

// Codecs are expensive to build (zlib and zstd state is hundreds of KiB), so
// they are pooled process-wide rather than kept per stream: an idle session
// then holds none. Every frame is an independent zlib stream or zstd frame,
// as MySQL writes them, so a codec carries nothing from one frame to the next.
var (
	compressZlibEncoders sync.Pool // *compressZlibEncoder
	compressZlibDecoders sync.Pool // *compressZlibDecoder
	compressZstdDecoders sync.Pool // *zstd.Decoder
	// One pool per level, since a zstd encoder's level is fixed at creation.
	compressZstdEncoders [zstd.SpeedBestCompression + 1]sync.Pool // *zstd.Encoder
)

type compressZlibEncoder struct {
	zw   *zlib.Writer
	sink compressSink
}

// compressSink lets the zlib writer append straight to the frame buffer.
type compressSink struct{ b []byte }

func (s *compressSink) Write(p []byte) (int, error) {
	s.b = append(s.b, p...)
	return len(p), nil
}

func compressZlibAppend(dst, src []byte) ([]byte, error) {
	e, _ := compressZlibEncoders.Get().(*compressZlibEncoder)
	if e == nil {
		e = &compressZlibEncoder{}
		// MySQL compresses with zlib's default level.
		e.zw = zlib.NewWriter(&e.sink)
	}
	e.sink.b = dst
	e.zw.Reset(&e.sink)
	_, err := e.zw.Write(src)
	if err == nil {
		err = e.zw.Close()
	}
	out := e.sink.b
	e.sink.b = nil // the pool must not pin the frame buffer
	compressZlibEncoders.Put(e)
	return out, err
}

type compressZlibDecoder struct {
	src bytes.Reader
	zr  io.ReadCloser // also a zlib.Resetter
}

// compressZlibDecode inflates src into dst and fails unless the stream holds
// exactly len(dst) bytes and its checksum matches.
func compressZlibDecode(dst, src []byte) error {
	d, _ := compressZlibDecoders.Get().(*compressZlibDecoder)
	if d == nil {
		d = &compressZlibDecoder{}
	}
	defer func() {
		d.src.Reset(nil) // the pool must not pin the payload
		compressZlibDecoders.Put(d)
	}()
	d.src.Reset(src)
	var err error
	if d.zr == nil {
		d.zr, err = zlib.NewReader(&d.src)
	} else {
		err = d.zr.(zlib.Resetter).Reset(&d.src, nil)
	}
	if err != nil {
		return err
	}
	if _, err := io.ReadFull(d.zr, dst); err != nil {
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			return errors.New("decompressed data shorter than declared")
		}
		return err
	}
	// Reading past the end verifies the checksum and that nothing is left.
	var one [1]byte
	switch _, err := io.ReadFull(d.zr, one[:]); err {
	case io.EOF:
		return nil
	case nil:
		return errors.New("decompressed data longer than declared")
	default:
		return err
	}
}

// compressZstdDecode decodes src into dst and fails unless it yields exactly
// len(dst) bytes. The cap limit stops decoding at len(dst), so a lying frame
// cannot make the decoder allocate beyond the declared length.
func compressZstdDecode(dst, src []byte) error {
	d, _ := compressZstdDecoders.Get().(*zstd.Decoder)
	if d == nil {
		var err error
		// Concurrency 1 with DecodeAll runs on the caller's goroutine only:
		// pooled decoders that the GC drops leave no goroutines behind.
		d, err = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxMemory(compressMaxPayload+1),
			zstd.WithDecodeAllCapLimit(true))
		if err != nil {
			return err
		}
	}
	out, err := d.DecodeAll(src, dst[:0:len(dst)])
	compressZstdDecoders.Put(d)
	if err != nil {
		return err
	}
	if len(out) != len(dst) {
		return fmt.Errorf("decompressed %d bytes, declared %d", len(out), len(dst))
	}
	if len(out) > 0 && &out[0] != &dst[0] {
		copy(dst, out)
	}
	return nil
}

func compressZstdAppend(dst, src []byte, level int) ([]byte, error) {
	lvl := zstd.EncoderLevelFromZstd(level)
	pool := &compressZstdEncoders[lvl]
	e, _ := pool.Get().(*zstd.Encoder)
	if e == nil {
		var err error
		// With a nil writer and EncodeAll, concurrency 1 never starts a
		// goroutine. No checksum, like MySQL's ZSTD_compressCCtx: the frame
		// header's length check already catches truncation.
		e, err = zstd.NewWriter(nil,
			zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderLevel(lvl),
			zstd.WithEncoderCRC(false))
		if err != nil {
			return dst, err
		}
	}
	dst = e.EncodeAll(src, dst)
	pool.Put(e)
	return dst, nil
}
