package mysql

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// tcpPair is pioTestTCPPair's connections as the TCP connections they are.
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	c, s := pioTestTCPPair(t)
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// TestSysWriterWaitsForRoom writes 12 MiB in raw-sized pieces to a peer that
// starts reading only after the socket buffers are full: the writes must wait
// for room in the poller and every byte must arrive in order.
func TestSysWriterWaitsForRoom(t *testing.T) {
	c, s := tcpPair(t)
	w := newSysWriter(c)
	if _, ok := w.(sysWriter); !ok {
		t.Fatalf("newSysWriter(TCP) = %T, want sysWriter", w)
	}
	data := make([]byte, 12<<20)
	rand.Read(data)
	done := make(chan error, 1)
	go func() {
		for off := 0; off < len(data); off += rawWriteMax - 1 {
			end := min(off+rawWriteMax-1, len(data))
			n, err := w.Write(data[off:end])
			if err == nil && n != end-off {
				err = io.ErrShortWrite
			}
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	time.Sleep(200 * time.Millisecond)
	got := make([]byte, len(data))
	s.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(s, got); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("bytes differ")
	}
}

// TestSysWriterDeadline: a write that cannot finish before the write deadline
// fails with a timeout, as net.Conn.Write does.
func TestSysWriterDeadline(t *testing.T) {
	c, _ := tcpPair(t)
	w := newSysWriter(c)
	c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	chunk := make([]byte, rawWriteMax)
	var err error
	for i := 0; i < 10000 && err == nil; i++ { // the peer never reads
		_, err = w.Write(chunk)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("got %v, want a write timeout", err)
	}
}

// TestSysWriterPeerReset: writes to a peer that reset the connection fail with
// the system call's error, wrapped as net.Conn.Write wraps it.
func TestSysWriterPeerReset(t *testing.T) {
	c, s := tcpPair(t)
	w := newSysWriter(c)
	s.SetLinger(0)
	s.Close()
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = w.Write([]byte("ping"))
		time.Sleep(5 * time.Millisecond)
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "write" || !(errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
		t.Fatalf("got %v, want a write error of ECONNRESET or EPIPE", err)
	}
}

// TestSysWriterClosed: a write after Close reports net.ErrClosed.
func TestSysWriterClosed(t *testing.T) {
	c, _ := tcpPair(t)
	w := newSysWriter(c)
	c.Close()
	if _, err := w.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("got %v, want net.ErrClosed", err)
	}
}

// TestSysWriterOnlyForTCP: other connections are written as they are.
func TestSysWriterOnlyForTCP(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if w := newSysWriter(a); w != a {
		t.Fatalf("newSysWriter(pipe) = %T, want the pipe itself", w)
	}
}
