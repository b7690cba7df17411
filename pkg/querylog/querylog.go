package querylog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"gopkg.in/natefinch/lumberjack.v2"
)

// Modes say which statements are logged.
const (
	ModeOff          = "off"
	ModeAll          = "all"
	ModeSlow         = "slow"
	ModeFailed       = "failed"
	ModeSlowOrFailed = "slow-or-failed"
)

// Filter decides which statements are logged and how much of their text.
// It can change while the logger runs (SetFilter).
type Filter struct {
	Mode          string
	SlowThreshold time.Duration
	// MaxTextLength cuts the statement text (bytes).
	MaxTextLength int
}

// Wants reports whether a statement with this latency and error code is
// logged.
func (f *Filter) Wants(latency time.Duration, errCode uint16) bool {
	switch f.Mode {
	case ModeAll:
		return true
	case ModeSlow:
		return latency >= f.SlowThreshold
	case ModeFailed:
		return errCode != 0
	case ModeSlowOrFailed:
		return errCode != 0 || latency >= f.SlowThreshold
	}
	return false
}

// Sink is where the lines go: the rotating file, or in tests any writer.
type Sink interface {
	io.Writer
	io.Closer
}

// FileOptions are the rotating file's settings.
type FileOptions struct {
	Path string
	// MaxSizeMB rotates the file when it reaches this size.
	MaxSizeMB int
	// MaxBackups and MaxAgeDays bound the rotated files kept (0: no limit
	// of that kind).
	MaxBackups, MaxAgeDays int
	Compress               bool
}

// NewFileSink opens nothing yet: lumberjack creates the file on the first
// write, which happens on the writer goroutine. lumberjack v2 keeps one idle
// goroutine per file for pruning backups that its Close does not end, so
// the server reuses the sink across reloads unless the file settings change.
func NewFileSink(o FileOptions) Sink {
	return &lumberjack.Logger{Filename: o.Path, MaxSize: o.MaxSizeMB, MaxBackups: o.MaxBackups,
		MaxAge: o.MaxAgeDays, Compress: o.Compress, LocalTime: false}
}

// Entry is one logged statement.
type Entry struct {
	Time    time.Time `json:"time"`
	ConnID  uint64    `json:"conn"`
	Cluster string    `json:"cluster"`
	Backend string    `json:"backend"`
	User    string    `json:"user"`
	Schema  string    `json:"schema"`
	Digest  string    `json:"digest"`
	// LatencyMs is the time from the command's arrival to the end of its
	// response.
	LatencyMs    float64 `json:"latency_ms"`
	Rows         uint64  `json:"rows"`
	RowsAffected uint64  `json:"rows_affected"`
	ErrorCode    uint16  `json:"error_code"`
	Text         string  `json:"text"`
	// Truncated is set when Text was cut at the configured length.
	Truncated bool `json:"truncated,omitempty"`
}

// Counters outlive a Logger, so that a reload that reopens the file does not
// reset what Prometheus reads.
type Counters struct {
	Written, Dropped, WriteErrors atomic.Uint64
}

// Logger owns the channel and the writer goroutine.
type Logger struct {
	lg      *zap.Logger
	sink    Sink
	ch      chan *Entry
	filter  atomic.Pointer[Filter]
	counts  *Counters
	closing chan struct{}
	done    chan struct{}

	mu     sync.RWMutex // guards closed against Log sending on a closed channel
	closed bool
	once   sync.Once
}

// DefaultBuffer is the channel's capacity in entries.
const DefaultBuffer = 8192

// New builds a logger writing to sink; buffer is the channel capacity. It
// starts its writer goroutine at once; Close stops it.
func New(lg *zap.Logger, sink Sink, f Filter, buffer int, counts *Counters) *Logger {
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	if counts == nil {
		counts = &Counters{}
	}
	l := &Logger{lg: lg, sink: sink, ch: make(chan *Entry, buffer), counts: counts,
		closing: make(chan struct{}), done: make(chan struct{})}
	l.SetFilter(f)
	go l.run()
	return l
}

// SetFilter changes what is logged from now on.
func (l *Logger) SetFilter(f Filter) { l.filter.Store(&f) }

// Filter returns the filter in force.
func (l *Logger) Filter() *Filter { return l.filter.Load() }

// Log queues e without waiting: when the queue is full (the writer is
// behind) the entry is dropped and counted. It reports whether e was queued.
func (l *Logger) Log(e *Entry) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		l.counts.Dropped.Add(1)
		return false
	}
	select {
	case l.ch <- e:
		return true
	default:
		l.counts.Dropped.Add(1)
		return false
	}
}

// Pending is the number of entries waiting for the writer.
func (l *Logger) Pending() int { return len(l.ch) }

func (l *Logger) run() {
	defer close(l.done)
	w := bufio.NewWriterSize(&errorCounting{l: l}, 64<<10)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for {
		var e *Entry
		select {
		case e = <-l.ch:
		case <-l.closing:
			// Write what was queued before Close, then stop.
			for {
				select {
				case e = <-l.ch:
					l.write(enc, e)
					continue
				default:
				}
				break
			}
			_ = w.Flush()
			return
		}
		l.write(enc, e)
		if len(l.ch) == 0 {
			_ = w.Flush() // idle: make the lines visible
		}
	}
}

func (l *Logger) write(enc *json.Encoder, e *Entry) {
	if err := enc.Encode(e); err != nil {
		l.counts.WriteErrors.Add(1)
	}
	// Written is counted when the buffered lines reach the sink.
}

// errorCounting passes writes to the sink, counting the lines that got
// there (one entry is one line: JSON escapes newlines in strings) and the
// failures, logged at most once per 10 s so a full disk cannot flood the log.
type errorCounting struct {
	l       *Logger
	lastLog time.Time
}

func (w *errorCounting) Write(p []byte) (int, error) {
	n, err := w.l.sink.Write(p)
	if err != nil {
		w.l.counts.WriteErrors.Add(1)
		if time.Since(w.lastLog) > 10*time.Second {
			w.lastLog = time.Now()
			w.l.lg.Warn("query log write failed; entries are lost until it recovers", zap.Error(err))
		}
		// Report success to bufio so that it does not stay stuck on the
		// error: the lines are gone either way.
		return len(p), nil
	}
	w.l.counts.Written.Add(uint64(bytes.Count(p[:n], []byte{'\n'})))
	return n, nil
}

// ErrStuck is returned by Close when the writer did not finish within the
// timeout (a write blocked on a stalled disk or pipe).
var ErrStuck = errors.New("query log writer is blocked")

// Close stops accepting entries, lets the writer write what is queued and
// closes the sink. It waits at most timeout for the writer: a writer blocked
// in a write that never returns is abandoned (it ends with the process) and
// ErrStuck returned. Close is idempotent.
func (l *Logger) Close(timeout time.Duration) error {
	var err error
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		close(l.closing)
		select {
		case <-l.done:
			err = l.sink.Close()
		case <-time.After(timeout):
			err = ErrStuck
			l.lg.Warn("query log writer blocked in a write; abandoning it", zap.Int("queued", len(l.ch)))
		}
	})
	return err
}

// CutText copies text cut at n bytes (without splitting a UTF-8 sequence)
// and reports whether it was cut.
func CutText(text []byte, n int) (string, bool) {
	if len(text) <= n {
		return string(text), false
	}
	i := n
	for i > 0 && i > n-4 && text[i]&0xc0 == 0x80 {
		i--
	}
	return string(text[:i]), true
}
