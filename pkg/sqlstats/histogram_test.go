package sqlstats

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBucketsCoverEveryLatency(t *testing.T) {
	for _, d := range []time.Duration{0, time.Microsecond, 3 * time.Microsecond, 4 * time.Microsecond,
		7 * time.Microsecond, 8 * time.Microsecond, 999 * time.Microsecond, time.Millisecond, 1234567 * time.Microsecond, time.Hour} {
		i := bucketOf(d)
		lo, hi := bucketBounds(i)
		if i == nBuckets-1 && d > hi {
			continue // the last bucket takes everything slower
		}
		require.True(t, d >= lo && d < hi+time.Microsecond, "%v in bucket %d [%v, %v)", d, i, lo, hi)
	}
	for i := 1; i < nBuckets; i++ {
		_, prevHi := bucketBounds(i - 1)
		lo, _ := bucketBounds(i)
		require.Equal(t, prevHi, lo, "buckets %d and %d are contiguous", i-1, i)
	}
}
