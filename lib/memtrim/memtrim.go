// Package memtrim gives the memory a quiet process no longer uses back to the
// operating system.
//
// Go's garbage collector lets the heap grow to twice what is live before it
// collects (GOGC=100), and the runtime keeps what a collection freed, and the
// stacks of goroutines that ended, for the heap's next growth. A proxy that
// logged in thousands of sessions and then went quiet (its sessions parked:
// no goroutine, no buffers) therefore keeps about twice what those sessions
// need, until enough is allocated again for the next collection, which in a
// quiet process can be a long time. So, each interval, the trimmer looks at
// what the process allocated: when an interval was quiet after the process
// was busy, or after a collection ran, it forces one collection and returns
// every free page to the OS (debug.FreeOSMemory). A busy process is left
// alone: it would need the memory again at once. The cost is at most one
// extra collection for each busy spell or ordinary collection, done while
// the process is quiet.
package memtrim

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// DefaultInterval is how often the trimmer looks.
const DefaultInterval = 10 * time.Second

// minHeap is the heap (bytes of objects, live or not yet collected) below
// which trimming is not worth a collection.
const minHeap = 8 << 20

// Sample is what the policy reads from the runtime.
type Sample struct {
	Allocs  uint64 // bytes allocated since the process started
	Objects uint64 // bytes of heap objects now, live or not yet collected
	GCs     uint64 // collections completed since the process started
	Held    uint64 // bytes the runtime holds from the OS and has not released
}

// Policy decides, one sample per interval, whether to trim.
type Policy struct {
	last  Sample
	dirty bool // busy, or a collection ran, since the last trim
	init  bool
}

// Step takes this interval's sample and says whether to trim now. An
// interval is quiet when it allocated at most a sixteenth of the heap.
func (p *Policy) Step(s Sample) bool {
	if !p.init {
		p.init, p.last = true, s
		return false
	}
	allocated := s.Allocs - p.last.Allocs
	if s.GCs != p.last.GCs {
		p.dirty = true
	}
	p.last = s
	if allocated > s.Objects/16 {
		p.dirty = true
		return false
	}
	if !p.dirty || s.Objects < minHeap {
		return false
	}
	p.dirty = false
	return true
}

// Trimmed resets the baseline after a trim, whose own collection must not
// count as a reason for the next one.
func (p *Policy) Trimmed(s Sample) { p.last = s }

// Run trims the process's memory by the Policy every interval until ctx
// ends. onTrim, if not nil, is told the bytes the process held from the OS
// before and after each trim.
func Run(ctx context.Context, interval time.Duration, onTrim func(before, after uint64)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	tr := newTrimmer(onTrim)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			tr.step()
		}
	}
}

// trimmer is one Run: the policy and what it is told after a trim.
type trimmer struct {
	p      Policy
	onTrim func(before, after uint64)
}

// newTrimmer takes the policy's baseline sample now.
func newTrimmer(onTrim func(before, after uint64)) *trimmer {
	t := &trimmer{onTrim: onTrim}
	t.p.Step(read())
	return t
}

// step samples the runtime, trims if the policy says so, and says whether
// it did.
func (t *trimmer) step() bool {
	s := read()
	if !t.p.Step(s) {
		return false
	}
	debug.FreeOSMemory()
	after := read()
	t.p.Trimmed(after)
	if t.onTrim != nil {
		t.onTrim(s.Held, after.Held)
	}
	return true
}

var sampleNames = []string{
	"/gc/heap/allocs:bytes",
	"/memory/classes/heap/objects:bytes",
	"/gc/cycles/total:gc-cycles",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/released:bytes",
}

func read() Sample {
	m := make([]metrics.Sample, len(sampleNames))
	for i, n := range sampleNames {
		m[i].Name = n
	}
	metrics.Read(m)
	return Sample{
		Allocs:  m[0].Value.Uint64(),
		Objects: m[1].Value.Uint64(),
		GCs:     m[2].Value.Uint64(),
		Held:    m[3].Value.Uint64() - m[4].Value.Uint64(),
	}
}
