package sqlstats

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// The latency histogram has four buckets per power of two of microseconds
// (each about 19% wide) from 1µs up to about 36 minutes; slower statements
// land in the last bucket. Percentiles read from it are within a bucket's
// width of the truth and clamped to the observed min and max.
const (
	subBuckets = 4
	maxExp     = 31
	nBuckets   = subBuckets * maxExp
)

type histogram [nBuckets]atomic.Uint64

// bucketOf maps a latency to its bucket.
func bucketOf(d time.Duration) int {
	us := uint64(d / time.Microsecond)
	if us < subBuckets {
		return int(us)
	}
	e := bits.Len64(us) - 1 // 2 or more
	idx := subBuckets*(e-1) + int((us>>(e-2))&(subBuckets-1))
	if idx >= nBuckets {
		return nBuckets - 1
	}
	return idx
}

// bucketBounds is the latency range [lo, hi) of bucket i.
func bucketBounds(i int) (lo, hi time.Duration) {
	if i < subBuckets {
		return time.Duration(i) * time.Microsecond, time.Duration(i+1) * time.Microsecond
	}
	e := i/subBuckets + 1
	sub := uint64(i % subBuckets)
	base := uint64(1) << e
	step := base / subBuckets
	l := base + sub*step
	return time.Duration(l) * time.Microsecond, time.Duration(l+step) * time.Microsecond
}

func (h *histogram) observe(d time.Duration) { h[bucketOf(d)].Add(1) }

// counts copies the buckets.
func (h *histogram) counts() (out [nBuckets]uint64) {
	for i := range h {
		out[i] = h[i].Load()
	}
	return out
}

// quantile estimates the q-quantile (0 < q ≤ 1) of the counted latencies by
// interpolating inside the bucket that holds it.
func quantile(c *[nBuckets]uint64, q float64, min, max time.Duration) time.Duration {
	var total uint64
	for _, n := range c {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var seen float64
	for i, n := range c {
		if n == 0 {
			continue
		}
		if seen+float64(n) >= rank {
			lo, hi := bucketBounds(i)
			v := lo + time.Duration((rank-seen)/float64(n)*float64(hi-lo))
			return clamp(v, min, max)
		}
		seen += float64(n)
	}
	return max
}

func clamp(v, lo, hi time.Duration) time.Duration {
	if v < lo {
		return lo
	}
	if hi > 0 && v > hi {
		return hi
	}
	return v
}
