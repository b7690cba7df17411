package balance

import (
	"cmp"

	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/observer"
)

const (
	// Memory use above these fractions of the quota is a risk of being killed
	// for OOM (2) or of getting there (1).
	memoryHighRisk = 0.75
	memoryRisk     = 0.6
	// cpuStep groups CPU usage into steps so that noise between similar
	// backends does not decide; sessions break the tie.
	cpuStep = 0.05
	cpuMax  = 20 // steps: 100% and above
	// defaultCPUPerSession is the CPU a new session is assumed to add to a
	// backend that had no sessions at its last reading.
	defaultCPUPerSession = 0.01
)

// Candidate is one backend with the router's session counts.
type Candidate struct {
	Backend *observer.Backend
	// Sessions is the number of sessions the router has on the backend now.
	Sessions int64
	// SessionsAtMetrics is Sessions when the backend's metrics were read.
	SessionsAtMetrics int64
}

// Score orders candidates; lower is better, fields compare in order.
type Score struct {
	Health   int // probe failures short of unhealthy: 0 or 1
	Memory   int // risk 0, 1 or 2
	CPU      int // estimated usage in 5% steps
	Zone     int // 0 when the backend is in the proxy's zone (or zones are unknown)
	Sessions int64
}

// Compare returns -1, 0 or 1 as a is better than, as good as, or worse than b.
func (a Score) Compare(b Score) int {
	return cmp.Or(
		cmp.Compare(a.Health, b.Health),
		cmp.Compare(a.Memory, b.Memory),
		cmp.Compare(a.CPU, b.CPU),
		cmp.Compare(a.Zone, b.Zone),
		cmp.Compare(a.Sessions, b.Sessions),
	)
}

// Routable reports whether a backend may take new sessions.
func Routable(b *observer.Backend) bool { return b.Health.Healthy }

// ScoreOf scores one candidate under policy for a proxy in zone.
func ScoreOf(policy, zone string, c Candidate) Score {
	s := Score{Sessions: c.Sessions}
	if policy == config.PolicyConnection {
		return s
	}
	b := c.Backend
	if b.Health.Failures > 0 {
		s.Health = 1
	}
	if m := b.Metrics; m.HasMemory {
		switch {
		case m.Memory > memoryHighRisk:
			s.Memory = 2
		case m.Memory > memoryRisk:
			s.Memory = 1
		}
	}
	if b.Metrics.HasCPU {
		s.CPU = CPUStep(estimateCPU(c))
	}
	if zone != "" {
		if bz := b.Labels["zone"]; bz != "" && bz != zone {
			s.Zone = 1
		}
	}
	return s
}

// CPUStep is the CPU score of a usage (a fraction of the quota): 5% steps,
// capped at 100%.
func CPUStep(usage float64) int { return max(0, min(int(usage/cpuStep), cpuMax)) }

// estimateCPU adds to the last reading what the sessions routed since are
// likely to cost, at the backend's measured cost per session.
func estimateCPU(c Candidate) float64 {
	cpu := c.Backend.Metrics.CPU
	added := c.Sessions - c.SessionsAtMetrics
	if added <= 0 {
		return cpu
	}
	per := defaultCPUPerSession
	if c.SessionsAtMetrics > 0 {
		per = cpu / float64(c.SessionsAtMetrics)
	}
	return cpu + float64(added)*per
}

// Pick returns the index of the best routable candidate, or -1 when none is
// routable. Ties go to the earliest candidate; callers rotate the list if
// they want ties spread.
func Pick(policy, zone string, cands []Candidate) int {
	best := -1
	var bestScore Score
	for i, c := range cands {
		if !Routable(c.Backend) {
			continue
		}
		s := ScoreOf(policy, zone, c)
		if best < 0 || s.Compare(bestScore) < 0 {
			best, bestScore = i, s
		}
	}
	return best
}
