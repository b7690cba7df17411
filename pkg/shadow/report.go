package shadow

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard-db/switchyard/lib/api"
	"github.com/switchyard-db/switchyard/pkg/sqlstats"
)

// Counters are one mirror's totals. They live as long as the mirror's
// name, source and target stay the same, across reloads that change its
// other settings.
type Counters struct {
	// Sampled statements were chosen by sessions; Dropped ones found the
	// queue full (or the mirror closing).
	Sampled, Dropped atomic.Uint64
	// Skipped statements were refused before running (refuse) or could not
	// be compared (the target's schema did not exist).
	Skipped atomic.Uint64
	// Errors counts statements not run or not finished because the target
	// could not be reached, refused the login, timed out or broke the
	// connection.
	Errors atomic.Uint64
	// Compared statements ran on both; Mismatches of them differed (rows,
	// checksum or error code).
	Compared, Mismatches atomic.Uint64
}

// DigestStatus is one digest's comparison, as the API shows it.
type DigestStatus = api.ShadowDigest

// digestRow accumulates one digest's comparison; snapshot turns its sums
// into averages.
type digestRow struct {
	DigestStatus
	sourceNs, targetNs int64
}

// othersDigest names the row that gathers digests beyond MaxDigests.
const othersDigest = "others"

// maxExample bounds an example statement's text.
const maxExample = 1024

// digests is a mirror's per-digest table; only its workers write it.
type digests struct {
	mu  sync.Mutex
	max int
	m   map[string]*digestRow
}

func (d *digests) record(st *sqlstats.Statement, text []byte, srcLat, tgtLat time.Duration, rowsDiffer, errDiffers bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	key, label := st.DigestHex, st.Normalized
	row := d.m[key]
	if row == nil {
		if len(d.m) >= d.max {
			key, label = othersDigest, "(digests beyond max-digests)"
			row = d.m[key]
		}
		if row == nil {
			row = &digestRow{DigestStatus: DigestStatus{Digest: key, DigestText: label}}
			d.m[key] = row
		}
	}
	row.Compared++
	row.sourceNs += int64(srcLat)
	row.targetNs += int64(tgtLat)
	row.TargetMaxMs = max(row.TargetMaxMs, ms(tgtLat))
	if rowsDiffer || errDiffers {
		row.Mismatches++
		if rowsDiffer {
			row.RowMismatches++
		} else {
			row.ErrorMismatches++
		}
		row.LastMismatch = time.Now().UTC()
		if st.Sensitive {
			row.Example = st.Normalized
		} else {
			row.Example = string(text[:min(len(text), maxExample)])
		}
	}
}

func (d *digests) snapshot() []DigestStatus {
	d.mu.Lock()
	out := make([]DigestStatus, 0, len(d.m))
	for _, r := range d.m {
		c := r.DigestStatus
		c.SourceAvgMs = ms(time.Duration(r.sourceNs / int64(c.Compared)))
		c.TargetAvgMs = ms(time.Duration(r.targetNs / int64(c.Compared)))
		out = append(out, c)
	}
	d.mu.Unlock()
	slices.SortFunc(out, func(a, b DigestStatus) int {
		return cmp.Or(cmp.Compare(b.Mismatches, a.Mismatches), cmp.Compare(b.Compared, a.Compared), cmp.Compare(a.Digest, b.Digest))
	})
	return out
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Status is one mirror as GET /api/v1/shadow shows it. It never carries
// the mirror's credentials.
type Status = api.ShadowStatus

func sortStatus(s []Status) {
	slices.SortFunc(s, func(a, b Status) int { return cmp.Compare(a.Name, b.Name) })
}
