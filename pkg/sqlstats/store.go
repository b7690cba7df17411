package sqlstats

import (
	"sync"
	"sync/atomic"
	"time"
)

// Defaults and limits.
const (
	DefaultMaxDigests   = 1000
	DefaultSampleLength = 1024
	// digestShards splits each cluster's table so that sessions recording
	// different digests rarely share a lock. max-digests is spread evenly
	// over them, so heavy hitters are chosen per shard.
	digestShards = 16
)

// Options tune a Store; SetOptions changes them while it runs.
type Options struct {
	// MaxDigests bounds the digests kept per cluster (besides "others").
	MaxDigests int
	// SampleLength cuts the sample text of each digest.
	SampleLength int
}

func (o Options) withDefaults() Options {
	if o.MaxDigests <= 0 {
		o.MaxDigests = DefaultMaxDigests
	}
	if o.SampleLength <= 0 {
		o.SampleLength = DefaultSampleLength
	}
	return o
}

// Store holds the digest tables of every cluster.
type Store struct {
	norm *normCache
	opts atomic.Pointer[Options]

	mu       sync.RWMutex
	clusters map[string]*Cluster
}

// New builds an empty Store.
func New(opts Options) *Store {
	s := &Store{norm: newNormCache(defaultCacheSize), clusters: map[string]*Cluster{}}
	s.SetOptions(opts)
	return s
}

// SetOptions applies new options. A smaller MaxDigests takes effect as new
// digests arrive: each insert into a shard over its share evicts until it
// fits.
func (s *Store) SetOptions(opts Options) {
	o := opts.withDefaults()
	s.opts.Store(&o)
}

// Options returns the options in force.
func (s *Store) Options() Options { return *s.opts.Load() }

// Cluster returns the cluster's table, creating it on first use. Sessions
// keep the result for their whole life.
func (s *Store) Cluster(name string) *Cluster {
	s.mu.RLock()
	c := s.clusters[name]
	s.mu.RUnlock()
	if c != nil {
		return c
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c = s.clusters[name]; c == nil {
		c = newCluster(s, name)
		s.clusters[name] = c
	}
	return c
}

// clusterList returns the clusters, or only the named one.
func (s *Store) clusterList(only string) []*Cluster {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*Cluster
	for name, c := range s.clusters {
		if only == "" || only == name {
			out = append(out, c)
		}
	}
	return out
}

// Reset empties the digest tables (of one cluster, or all when cluster is
// ""). The running totals behind the Prometheus counters are kept, since
// counters never go down.
func (s *Store) Reset(cluster string) {
	for _, c := range s.clusterList(cluster) {
		c.reset()
	}
}

// Exec is one statement execution as a session reports it.
type Exec struct {
	User, Schema string
	// Text is the statement (for a prepared statement, the text it was
	// prepared from). It is only read during Record.
	Text    []byte
	Latency time.Duration
	// At is when the statement finished.
	At           time.Time
	RowsSent     uint64
	RowsAffected uint64
	// ErrCode is the MySQL error code of a failed statement, 0 on success.
	ErrCode uint16
}

// key identifies one digest row.
type key struct {
	user, schema string
	digest       [32]byte
}

// Cluster is one cluster's digest table.
type Cluster struct {
	store  *Store
	name   string
	shards [digestShards]digestShard

	othersMu sync.Mutex
	others   *entry // guarded by othersMu

	// Running totals for Prometheus; never reset.
	totalExecs, totalErrors, totalRows, totalLatencyNs, evictions atomic.Uint64
}

type digestShard struct {
	mu      sync.RWMutex
	m       map[key]*entry
	entries []*entry
	_       [40]byte // keep neighbouring shards' locks off one cache line
}

func newCluster(s *Store, name string) *Cluster {
	c := &Cluster{store: s, name: name, others: newEntry(key{}, nil, "", time.Time{}, 0)}
	for i := range c.shards {
		c.shards[i].m = map[key]*entry{}
	}
	return c
}

func (c *Cluster) reset() {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.m = map[key]*entry{}
		sh.entries = nil
		sh.mu.Unlock()
	}
	c.othersMu.Lock()
	c.others = newEntry(key{}, nil, "", time.Time{}, 0)
	c.othersMu.Unlock()
}

// Record counts one execution and returns its Statement (for the query
// log). It is the per-statement hot path: for a text seen recently it takes
// two read locks and does not allocate.
func (c *Cluster) Record(e *Exec) *Statement {
	st := c.store.norm.lookup(e.Text)
	k := key{user: e.User, schema: e.Schema, digest: st.Digest}
	c.totalExecs.Add(1)
	c.totalLatencyNs.Add(uint64(e.Latency))
	c.totalRows.Add(e.RowsSent)
	if e.ErrCode != 0 {
		c.totalErrors.Add(1)
	}
	idx := c.shardOf(&k)
	sh := &c.shards[idx]
	sh.mu.RLock()
	if en := sh.m[k]; en != nil {
		en.add(e)
		sh.mu.RUnlock()
		return st
	}
	sh.mu.RUnlock()
	c.insert(idx, k, st, e)
	return st
}

func (c *Cluster) shardOf(k *key) int {
	// The digest is already a uniform hash; user and schema matter little.
	return int((uint64(k.digest[0]) ^ uint64(len(k.user))*31 ^ uint64(len(k.schema))*17) % digestShards)
}

// insert adds a new digest row, evicting the lightest rows of the shard into
// "others" while it is over its share of MaxDigests.
func (c *Cluster) insert(idx int, k key, st *Statement, e *Exec) {
	sh := &c.shards[idx]
	opts := c.store.opts.Load()
	per := opts.MaxDigests / digestShards
	if idx < opts.MaxDigests%digestShards {
		per++
	}
	sample := st.Normalized
	if !st.Sensitive {
		sample = truncate(string(e.Text), opts.SampleLength)
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if en := sh.m[k]; en != nil { // another session inserted it meanwhile
		en.add(e)
		return
	}
	var base uint64
	for len(sh.entries) > 0 && len(sh.entries) >= per {
		base = c.evictMin(sh)
	}
	en := newEntry(k, st, sample, e.At, base)
	en.add(e)
	if per == 0 { // a table smaller than the shard count: this shard holds nothing
		c.othersMu.Lock()
		c.others.merge(en)
		c.othersMu.Unlock()
		return
	}
	sh.m[k] = en
	sh.entries = append(sh.entries, en)
}

// evictMin folds the shard's lightest row into "others" and returns its
// weight, which the newcomer inherits (space-saving). The caller holds the
// shard's write lock, so no session is adding to the row meanwhile.
func (c *Cluster) evictMin(sh *digestShard) uint64 {
	mi, mw := 0, ^uint64(0)
	for i, en := range sh.entries {
		if w := en.weight(); w < mw {
			mi, mw = i, w
		}
	}
	victim := sh.entries[mi]
	last := len(sh.entries) - 1
	sh.entries[mi] = sh.entries[last]
	sh.entries[last] = nil
	sh.entries = sh.entries[:last]
	delete(sh.m, victim.key)
	c.othersMu.Lock()
	c.others.merge(victim)
	c.othersMu.Unlock()
	c.evictions.Add(1)
	return mw
}

// Len counts the digest rows held (without "others").
func (c *Cluster) Len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.entries)
		sh.mu.RUnlock()
	}
	return n
}

// entry is one digest row. Sessions update it with atomics while holding
// their shard's read lock; eviction and reset take the write lock.
type entry struct {
	key    key
	st     *Statement
	sample string
	first  int64 // unix nanoseconds
	// base is the weight inherited at insertion (space-saving): the row
	// ranks as if it had base+count executions.
	base uint64

	count, errors, latencyNs, rowsSent, rowsAffected atomic.Uint64
	minNs, maxNs                                     atomic.Int64
	last                                             atomic.Int64
	lastErr                                          atomic.Uint32
	hist                                             histogram
}

func newEntry(k key, st *Statement, sample string, at time.Time, base uint64) *entry {
	en := &entry{key: k, st: st, sample: sample, base: base}
	if !at.IsZero() {
		en.first = at.UnixNano()
	}
	en.minNs.Store(-1)
	return en
}

func (en *entry) weight() uint64 { return en.base + en.count.Load() }

func (en *entry) add(e *Exec) {
	en.count.Add(1)
	d := int64(e.Latency)
	en.latencyNs.Add(uint64(d))
	if e.RowsSent != 0 {
		en.rowsSent.Add(e.RowsSent)
	}
	if e.RowsAffected != 0 {
		en.rowsAffected.Add(e.RowsAffected)
	}
	if e.ErrCode != 0 {
		en.errors.Add(1)
		en.lastErr.Store(uint32(e.ErrCode))
	}
	for {
		m := en.minNs.Load()
		if (m >= 0 && m <= d) || en.minNs.CompareAndSwap(m, d) {
			break
		}
	}
	for {
		m := en.maxNs.Load()
		if m >= d || en.maxNs.CompareAndSwap(m, d) {
			break
		}
	}
	at := e.At.UnixNano()
	if en.last.Load() < at {
		en.last.Store(at)
	}
	en.hist.observe(e.Latency)
}

// merge adds o's counts into en ("others"). Only one goroutine merges into
// en at a time (othersMu) and nobody updates o.
func (en *entry) merge(o *entry) {
	n := o.count.Load()
	if n == 0 {
		return
	}
	en.count.Add(n)
	en.errors.Add(o.errors.Load())
	en.latencyNs.Add(o.latencyNs.Load())
	en.rowsSent.Add(o.rowsSent.Load())
	en.rowsAffected.Add(o.rowsAffected.Load())
	if m := o.minNs.Load(); m >= 0 && (en.minNs.Load() < 0 || m < en.minNs.Load()) {
		en.minNs.Store(m)
	}
	if m := o.maxNs.Load(); m > en.maxNs.Load() {
		en.maxNs.Store(m)
	}
	if o.first != 0 && (en.first == 0 || o.first < en.first) {
		en.first = o.first
	}
	if l := o.last.Load(); l > en.last.Load() {
		en.last.Store(l)
	}
	if e := o.lastErr.Load(); e != 0 {
		en.lastErr.Store(e)
	}
	for i := range o.hist {
		if v := o.hist[i].Load(); v != 0 {
			en.hist[i].Add(v)
		}
	}
}

// Statement returns the Statement of text through the normaliser cache,
// without recording anything (the query log uses it when digests are off).
func (s *Store) Statement(text []byte) *Statement { return s.norm.lookup(text) }
