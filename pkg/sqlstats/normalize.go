package sqlstats

import (
	"encoding/hex"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pingcap/tidb/pkg/parser"
)

// Statement is what normalising one statement text gives. It is immutable
// and shared by every text with the same normalised form.
type Statement struct {
	// Digest is the SHA-256 of the normalised text (TiDB's digest).
	Digest [32]byte
	// DigestHex is Digest in hex, as TiDB shows it.
	DigestHex string
	// Normalized is the normalised text, cut at maxNormalizedLen bytes.
	Normalized string
	// Sensitive marks statements that may carry credentials (CREATE USER …
	// IDENTIFIED BY, SET PASSWORD, CHANGE MASTER …): their raw text must not
	// be shown or logged, only the normalised one.
	Sensitive bool
}

// Bounds of the normaliser cache. A cached raw text is compared byte for
// byte when it is at most maxRawCompare long; longer texts are matched by
// their 64-bit hash and length alone (a collision, odds 2^-64 per pair, would
// file one execution under the wrong digest).
const (
	normShards       = 16
	defaultCacheSize = 4096
	maxRawCompare    = 512
	maxNormalizedLen = 2048
)

// normCache maps raw statement texts to their Statement. It is a fixed-size
// clock cache: an entry hit since the hand last passed survives one more
// round.
type normCache struct {
	seed   maphash.Seed
	shards [normShards]normShard
	misses atomic.Uint64
}

type normShard struct {
	mu   sync.RWMutex
	m    map[uint64]*normSlot
	ring []uint64 // the keys of m in clock order
	hand int
	cap  int
}

type normSlot struct {
	raw  string // the text when at most maxRawCompare bytes
	size int
	st   *Statement
	ref  atomic.Bool
}

func newNormCache(size int) *normCache {
	if size < normShards {
		size = normShards
	}
	c := &normCache{seed: maphash.MakeSeed()}
	per := (size + normShards - 1) / normShards
	for i := range c.shards {
		c.shards[i].m = make(map[uint64]*normSlot, per)
		c.shards[i].cap = per
	}
	return c
}

// lookup returns the Statement of text, normalising it on a miss.
func (c *normCache) lookup(text []byte) *Statement {
	h := maphash.Bytes(c.seed, text)
	sh := &c.shards[h%normShards]
	sh.mu.RLock()
	sl := sh.m[h]
	sh.mu.RUnlock()
	if sl != nil && sl.size == len(text) && (len(text) > maxRawCompare || sl.raw == string(text)) {
		if !sl.ref.Load() {
			sl.ref.Store(true)
		}
		return sl.st
	}
	c.misses.Add(1)
	st := normalize(string(text))
	sl = &normSlot{size: len(text), st: st}
	if len(text) <= maxRawCompare {
		sl.raw = string(text)
	}
	sh.mu.Lock()
	sh.put(h, sl)
	sh.mu.Unlock()
	return st
}

// put stores sl under h, evicting by the clock rule when full.
func (sh *normShard) put(h uint64, sl *normSlot) {
	if _, ok := sh.m[h]; ok {
		sh.m[h] = sl // a collision or a race with another miss: newest wins
		return
	}
	if len(sh.ring) < sh.cap {
		sh.ring = append(sh.ring, h)
		sh.m[h] = sl
		return
	}
	for {
		k := sh.ring[sh.hand]
		old := sh.m[k]
		if old != nil && old.ref.Load() {
			old.ref.Store(false)
			sh.hand = (sh.hand + 1) % len(sh.ring)
			continue
		}
		delete(sh.m, k)
		sh.ring[sh.hand] = h
		sh.m[h] = sl
		sh.hand = (sh.hand + 1) % len(sh.ring)
		return
	}
}

// len counts the cached texts.
func (c *normCache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// Normalize returns the Statement of one text without caching it.
func Normalize(text string) *Statement { return normalize(text) }

// Normalizer is a bounded cache of texts' Statements for callers outside a
// Store (the shadow mirror): each distinct text is normalised once while it
// stays in the cache. Safe for concurrent use.
type Normalizer struct{ c *normCache }

// NewNormalizer returns a Normalizer with the Store's cache size.
func NewNormalizer() *Normalizer { return &Normalizer{c: newNormCache(defaultCacheSize)} }

// Statement returns the Statement of text, normalising it on a miss.
func (n *Normalizer) Statement(text []byte) *Statement { return n.c.lookup(text) }

func normalize(text string) *Statement {
	norm, d := parser.NormalizeDigest(text)
	st := &Statement{Normalized: truncate(norm, maxNormalizedLen)}
	copy(st.Digest[:], d.Bytes())
	st.DigestHex = hex.EncodeToString(st.Digest[:])
	st.Sensitive = isSensitive(norm)
	return st
}

// sensitiveWords appear in statements that can carry a password or other
// credentials as a literal. The normalised text is lower case with literals
// replaced, so matching it is safe and cheap (once per distinct text).
var sensitiveWords = []string{"identified", "password", "change master", "change replication",
	"create server", "alter server", "aes_", "`encode`", "`decode`", "des_encrypt", "des_decrypt"}

func isSensitive(norm string) bool {
	for _, w := range sensitiveWords {
		if strings.Contains(norm, w) {
			return true
		}
	}
	return false
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && i > n-4 && s[i]&0xc0 == 0x80 {
		i--
	}
	return s[:i]
}
