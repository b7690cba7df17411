package traffic

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard-db/switchyard/lib/api"
	"go.uber.org/zap"
)

// FormatVersion is written in each file's header line.
const FormatVersion = 1

// Header is the first line of a capture file.
type Header struct {
	Version int       `json:"version"`
	Cluster string    `json:"cluster"`
	Start   time.Time `json:"start"`
}

// Record is one captured command (one line after the header).
type Record struct {
	// OffsetUs is when the command arrived, in µs since the capture began.
	OffsetUs int64  `json:"t"`
	ConnID   uint64 `json:"conn"`
	// Cmd is the command byte; Command its name ("query", "stmt_execute"…).
	Cmd     byte   `json:"cmd"`
	Command string `json:"command"`
	User    string `json:"user"`
	Schema  string `json:"schema"`
	// Text is the statement of a COM_QUERY or COM_STMT_PREPARE, or the
	// schema of a COM_INIT_DB. Redacted is set when the statement may carry
	// a credential: Text is then its normalised form.
	Text     string `json:"text,omitempty"`
	Redacted bool   `json:"redacted,omitempty"`
	// StmtID is the prepared statement's id: the one the backend returned
	// to COM_STMT_PREPARE, or the one an execute, reset or close names.
	StmtID uint32 `json:"stmt_id,omitempty"`
	// Payload is the raw packet after the command byte for COM_STMT_EXECUTE
	// (parameters), COM_STMT_SEND_LONG_DATA and the other binary commands.
	Payload []byte `json:"payload,omitempty"`
	// The outcome the client saw.
	LatencyUs    int64  `json:"latency_us"`
	Rows         uint64 `json:"rows"`
	RowsAffected uint64 `json:"rows_affected"`
	ErrorCode    uint16 `json:"error_code"`
	// Checksum is, for a COM_QUERY, the sum of a 64-bit xxhash of each
	// result row as the client received it (text protocol), in hex; empty
	// when not computed (a row too large to hash in passing). A replay
	// compares it with the rows it gets back.
	Checksum string `json:"checksum,omitempty"`
}

// Options start a capture.
type Options struct {
	Cluster string
	// Duration ends the capture (required).
	Duration time.Duration
	// MaxBytes ends it when the compressed file reaches this size (0: no
	// limit besides Duration).
	MaxBytes int64
	// Buffer is the queue length in records (0: DefaultBuffer).
	Buffer int
}

// flushEvery bounds how long captured records may sit in the writer's
// buffers before the file (and the size limit) sees them.
const (
	flushEvery = 200 * time.Millisecond
	drainEvery = 10 * time.Millisecond
)

// DefaultBuffer is the default queue length.
const DefaultBuffer = 16384

// Status is a capture's progress, or the last one's outcome. It is the
// API's document, so that the API and proxyctl need no copy of it.
type Status = api.TrafficCapture

// Capture states.
const (
	StateRunning   = "running"
	StateDone      = "done"
	StateCancelled = "cancelled"
	StateFailed    = "failed"
)

// ErrRunning is returned when a capture is asked for while one runs.
var ErrRunning = errors.New("a traffic capture is already running")

// Capture is one running capture.
type Capture struct {
	lg                *zap.Logger
	opts              Options
	start             time.Time
	path              string
	ch                chan *Record
	stop              chan string // reason
	done              chan struct{}
	closed            atomic.Bool
	mu                sync.RWMutex // guards closed against Add sending on a closed queue
	sendMu            sync.Mutex
	state             atomic.Pointer[Status]
	captured, dropped atomic.Uint64
	bytes             atomic.Int64
	stopOnce          sync.Once
}

// Start creates the file in dir and starts the writer goroutine.
func Start(lg *zap.Logger, dir string, o Options) (*Capture, error) {
	if o.Duration <= 0 {
		return nil, fmt.Errorf("duration %s: must be positive", o.Duration)
	}
	if o.MaxBytes < 0 {
		return nil, fmt.Errorf("max size %d: must be 0 (no limit) or more", o.MaxBytes)
	}
	if o.Buffer <= 0 {
		o.Buffer = DefaultBuffer
	}
	now := time.Now().UTC()
	path := filepath.Join(dir, fmt.Sprintf("traffic-%s-%s.jsonl.gz", o.Cluster, now.Format("20060102T150405.000Z")))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating the capture file: %w", err)
	}
	c := &Capture{lg: lg, opts: o, start: now, path: path, ch: make(chan *Record, o.Buffer),
		stop: make(chan string, 1), done: make(chan struct{})}
	c.setStatus(StateRunning, "")
	go c.run(f)
	return c, nil
}

// Cluster is the captured cluster.
func (c *Capture) Cluster() string { return c.opts.Cluster }

// Began is when the capture started (offsets count from it).
func (c *Capture) Began() time.Time { return c.start }

// Add queues r without waiting; it is dropped and counted when the queue is
// full or the capture has ended.
func (c *Capture) Add(r *Record) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed.Load() {
		return
	}
	select {
	case c.ch <- r:
	default:
		c.dropped.Add(1)
	}
}

// Stop ends the capture with reason (if it still runs) and waits for the
// file to be complete.
func (c *Capture) Stop(reason string) {
	select {
	case c.stop <- reason:
	default:
	}
	<-c.done
}

// Done is closed when the capture has ended and its file is complete.
func (c *Capture) Done() <-chan struct{} { return c.done }

// Status returns the capture's progress.
func (c *Capture) Status() Status {
	st := *c.state.Load()
	st.Captured, st.Dropped, st.Bytes = c.captured.Load(), c.dropped.Load(), c.bytes.Load()
	return st
}

func (c *Capture) setStatus(state, reason string) {
	st := &Status{State: state, Cluster: c.opts.Cluster, File: c.path, Start: c.start,
		Until: c.start.Add(c.opts.Duration), MaxBytes: c.opts.MaxBytes, Reason: reason}
	if state != StateRunning {
		st.End = time.Now().UTC()
	}
	c.state.Store(st)
}

// countingWriter counts what reaches the file.
type countingWriter struct {
	f *os.File
	n *atomic.Int64
}

func (w countingWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.n.Add(int64(n))
	return n, err
}

func (c *Capture) run(f *os.File) {
	defer close(c.done)
	gz := gzip.NewWriter(countingWriter{f: f, n: &c.bytes})
	bw := bufio.NewWriterSize(gz, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	timer := time.NewTimer(c.opts.Duration)
	defer timer.Stop()
	// The writer drains the queue every drainEvery instead of waking for
	// each record, and flushes the compressed stream every flushEvery:
	// waking per record and flushing whenever the queue was empty cost a
	// futex wake-up, a gzip sync flush and a write per record under light
	// load, which doubled the proxy's CPU per query.
	drain := time.NewTicker(drainEvery)
	defer drain.Stop()
	lastFlush, dirty := time.Now(), false
	state, reason := StateDone, "duration reached"
	err := enc.Encode(Header{Version: FormatVersion, Cluster: c.opts.Cluster, Start: c.start})
loop:
	for err == nil {
		select {
		case <-drain.C:
			for n := len(c.ch); n > 0 && err == nil; n-- {
				err = enc.Encode(<-c.ch)
				c.captured.Add(1)
				dirty = true
			}
			if err == nil && dirty && time.Since(lastFlush) >= flushEvery {
				// Push the compressed bytes out so the size limit and the
				// status see them.
				lastFlush, dirty = time.Now(), false
				if err = bw.Flush(); err == nil {
					err = gz.Flush()
				}
			}
			if c.opts.MaxBytes > 0 && c.bytes.Load() >= c.opts.MaxBytes {
				reason = "size limit reached"
				break loop
			}
		case <-timer.C:
			break loop
		case r := <-c.stop:
			state, reason = StateCancelled, r
			break loop
		}
	}
	// No more records: the queue is closed to new ones. Those already
	// queued (at most drainEvery's worth) are written, unless the size
	// limit ended it: then they are counted as dropped.
	c.mu.Lock()
	c.closed.Store(true)
	c.mu.Unlock()
	if reason != "size limit reached" {
		for n := len(c.ch); n > 0 && err == nil; n-- {
			err = enc.Encode(<-c.ch)
			c.captured.Add(1)
		}
	}
	c.dropped.Add(uint64(len(c.ch)))
	if err == nil {
		err = bw.Flush()
	}
	if cerr := gz.Close(); err == nil {
		err = cerr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		state, reason = StateFailed, "writing "+c.path+": "+err.Error()
		c.lg.Warn("traffic capture failed", zap.String("cluster", c.opts.Cluster), zap.Error(err))
	}
	c.setStatus(state, reason)
	c.lg.Info("traffic capture ended", zap.String("cluster", c.opts.Cluster), zap.String("file", c.path),
		zap.String("reason", reason), zap.Uint64("captured", c.captured.Load()), zap.Uint64("dropped", c.dropped.Load()))
}
