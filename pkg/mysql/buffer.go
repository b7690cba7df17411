package mysql

import (
	"io"
	"sync"
)

const (
	// smallBufSize is the read buffer a connection takes for a short
	// exchange. It is large enough for a typical query packet, so a short
	// query is still read with one system call.
	smallBufSize = 512
	// largeBufSize is the size of the pooled buffers used while data flows.
	// 32 KiB keeps large result sets at a few system calls per 32 KiB.
	largeBufSize = 32 << 10
)

var bufPool = sync.Pool{New: func() any {
	b := make([]byte, largeBufSize)
	return &b
}}

func getBuf() *[]byte  { return bufPool.Get().(*[]byte) }
func putBuf(b *[]byte) { bufPool.Put(b) }

var smallPool = sync.Pool{New: func() any { return new([smallBufSize]byte) }}

// reader is a buffered reader that holds a buffer only while data is
// flowing: a small one (smallBufSize) for a short exchange, a large one
// when a packet or a burst does not fit. Both come from pools and go back
// on release, so thousands of idle sessions hold no read buffer at all.
type reader struct {
	src io.Reader
	// buf is small's or pooled's buffer, or nil when released.
	buf    []byte
	small  *[smallBufSize]byte
	pooled *[]byte
	r, w   int
	// full is set when the last read filled the whole small buffer: more
	// data is probably waiting, so the next fill switches to a large buffer.
	full bool
}

func (rd *reader) init(src io.Reader) {
	rd.src = src
}

func (rd *reader) buffered() int { return rd.w - rd.r }

// grow switches to a pooled large buffer, keeping the unread bytes.
func (rd *reader) grow() {
	if rd.pooled != nil {
		return
	}
	p := getBuf()
	n := copy(*p, rd.buf[rd.r:rd.w])
	if rd.small != nil {
		smallPool.Put(rd.small)
		rd.small = nil
	}
	rd.pooled, rd.buf, rd.r, rd.w = p, *p, 0, n
}

// release returns the buffer when nothing is buffered. It is called when a
// session goes idle.
func (rd *reader) release() {
	if rd.r != rd.w {
		return
	}
	if rd.pooled != nil {
		putBuf(rd.pooled)
		rd.pooled = nil
	}
	if rd.small != nil {
		smallPool.Put(rd.small)
		rd.small = nil
	}
	rd.buf, rd.r, rd.w = nil, 0, 0
}

// fill reads until at least n bytes are buffered. n must not exceed
// largeBufSize.
func (rd *reader) fill(n int) error {
	if rd.w-rd.r >= n {
		return nil
	}
	if rd.buf == nil && n <= smallBufSize && !rd.full {
		rd.small = smallPool.Get().(*[smallBufSize]byte)
		rd.buf = rd.small[:]
	}
	if n > len(rd.buf) || (rd.full && rd.pooled == nil) {
		rd.grow()
	}
	if rd.r == rd.w {
		rd.r, rd.w = 0, 0
	} else if len(rd.buf)-rd.r < n {
		rd.w = copy(rd.buf, rd.buf[rd.r:rd.w])
		rd.r = 0
	}
	for rd.w-rd.r < n {
		m, err := rd.src.Read(rd.buf[rd.w:])
		rd.w += m
		if rd.pooled == nil {
			rd.full = rd.w == len(rd.buf)
		}
		if rd.w-rd.r >= n {
			return nil
		}
		if err != nil {
			if err == io.EOF && rd.w-rd.r > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// fillMore is fill for bytes that must follow what was already read (a
// payload after its header): running out there is a truncated packet, not
// a clean end of stream.
func (rd *reader) fillMore(n int) error {
	if err := rd.fill(n); err != io.EOF {
		return err
	}
	return io.ErrUnexpectedEOF
}

// readFull copies exactly len(p) bytes into p.
func (rd *reader) readFull(p []byte) error {
	for len(p) > 0 {
		if rd.r == rd.w {
			if err := rd.fill(1); err != nil {
				if err == io.EOF {
					return io.ErrUnexpectedEOF
				}
				return err
			}
		}
		n := copy(p, rd.buf[rd.r:rd.w])
		rd.r += n
		p = p[n:]
	}
	return nil
}

// writer is a buffered writer whose buffer comes from the pool on the first
// write and goes back after a flush.
type writer struct {
	dst    io.Writer // the connection (on Linux a sysWriter over it), or the TLS or compression layer
	buf    []byte
	pooled *[]byte
}

func (wr *writer) write(p []byte) error {
	if wr.pooled == nil {
		if len(p) >= largeBufSize {
			_, err := wr.dst.Write(p)
			return err
		}
		wr.acquire()
	}
	if len(wr.buf)+len(p) > cap(wr.buf) {
		if err := wr.flushBuf(); err != nil {
			return err
		}
		if len(p) >= cap(wr.buf) {
			_, err := wr.dst.Write(p)
			return err
		}
	}
	wr.buf = append(wr.buf, p...)
	return nil
}

// writeHeader writes a packet header of payload length n and sequence id
// seq. It appends the four bytes itself: a header built in an array and
// passed to write would escape to the heap (write may hand its slice to
// dst.Write), an allocation per packet forwarded.
func (wr *writer) writeHeader(n int, seq byte) error {
	if wr.pooled == nil {
		wr.acquire()
	} else if len(wr.buf)+4 > cap(wr.buf) {
		if err := wr.flushBuf(); err != nil {
			return err
		}
	}
	wr.buf = append(wr.buf, byte(n), byte(n>>8), byte(n>>16), seq)
	return nil
}

// acquire takes an empty buffer from the pool; the writer holds none.
func (wr *writer) acquire() {
	wr.pooled = getBuf()
	wr.buf = (*wr.pooled)[:0]
}

func (wr *writer) flushBuf() error {
	if len(wr.buf) == 0 {
		return nil
	}
	_, err := wr.dst.Write(wr.buf)
	wr.buf = wr.buf[:0]
	return err
}

// release returns the buffer to the pool; pending bytes must be flushed.
func (wr *writer) release() {
	if wr.pooled == nil || len(wr.buf) != 0 {
		return
	}
	putBuf(wr.pooled)
	wr.pooled, wr.buf = nil, nil
}
