// Package benchstat holds what the bench programs share to measure: order
// statistics, and a process's CPU time from /proc.
package benchstat

import (
	"math"
	"time"
)

// Percentile is the nearest-rank percentile of sorted (ascending): the
// smallest sample with at least p % of the samples at or below it. It is 0
// for no samples.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	// p*n/100 rather than p/100*n: 7/100*100 is 7.000000000000001 in
	// floating point, whose ceiling would skip a rank.
	i := int(math.Ceil(p*float64(len(sorted))/100)) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
