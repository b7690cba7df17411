package balance

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/observer"
)

type be struct {
	healthy  bool
	failures int
	cpu      float64 // <0: unknown
	mem      float64 // <0: unknown
	zone     string
	sessions int64
	atMetric int64
}

func cands(bs ...be) []Candidate {
	out := make([]Candidate, len(bs))
	for i, b := range bs {
		ob := &observer.Backend{
			Addr:   string(rune('a' + i)),
			Health: observer.Health{Healthy: b.healthy, Failures: b.failures},
		}
		if b.cpu >= 0 {
			ob.Metrics.CPU, ob.Metrics.HasCPU = b.cpu, true
		}
		if b.mem >= 0 {
			ob.Metrics.Memory, ob.Metrics.HasMemory = b.mem, true
		}
		if b.zone != "" {
			ob.Labels = map[string]string{"zone": b.zone}
		}
		out[i] = Candidate{Backend: ob, Sessions: b.sessions, SessionsAtMetrics: b.atMetric}
	}
	return out
}

func TestPick(t *testing.T) {
	tests := []struct {
		name   string
		policy string
		zone   string
		cands  []Candidate
		want   int
	}{
		{"none", config.PolicyResource, "", nil, -1},
		{"all unhealthy", config.PolicyResource, "", cands(be{cpu: -1, mem: -1}, be{cpu: -1, mem: -1}), -1},
		{"unhealthy excluded even if idle", config.PolicyConnection, "",
			cands(be{healthy: false, cpu: -1, mem: -1}, be{healthy: true, sessions: 50, cpu: -1, mem: -1}), 1},
		{"fewest sessions", config.PolicyResource, "",
			cands(be{healthy: true, sessions: 3, cpu: -1, mem: -1}, be{healthy: true, sessions: 2, cpu: -1, mem: -1}), 1},
		{"failing probes before memory", config.PolicyResource, "",
			cands(be{healthy: true, failures: 1, cpu: 0, mem: 0}, be{healthy: true, cpu: 0.9, mem: 0.9}), 1},
		{"memory risk before cpu", config.PolicyResource, "",
			cands(be{healthy: true, cpu: 0.1, mem: 0.8}, be{healthy: true, cpu: 0.9, mem: 0.5}), 1},
		{"cpu before sessions", config.PolicyResource, "",
			cands(be{healthy: true, cpu: 0.8, mem: -1}, be{healthy: true, cpu: 0.2, mem: -1, sessions: 100, atMetric: 100}), 1},
		{"similar cpu: sessions decide", config.PolicyResource, "",
			cands(be{healthy: true, cpu: 0.21, mem: -1, sessions: 5, atMetric: 5}, be{healthy: true, cpu: 0.22, mem: -1, sessions: 4, atMetric: 4}), 1},
		{"zone before sessions", config.PolicyResource, "z1",
			cands(be{healthy: true, cpu: -1, mem: -1, zone: "z2"}, be{healthy: true, cpu: -1, mem: -1, zone: "z1", sessions: 9}), 1},
		{"no proxy zone: zone ignored", config.PolicyResource, "",
			cands(be{healthy: true, cpu: -1, mem: -1, zone: "z2"}, be{healthy: true, cpu: -1, mem: -1, zone: "z1", sessions: 9}), 0},
		{"connection policy ignores cpu and memory", config.PolicyConnection, "z1",
			cands(be{healthy: true, cpu: 0.9, mem: 0.9, zone: "z2", sessions: 1}, be{healthy: true, cpu: 0, mem: 0, zone: "z1", sessions: 2}), 0},
		{"ties go to the first", config.PolicyResource, "",
			cands(be{healthy: true, cpu: -1, mem: -1}, be{healthy: true, cpu: -1, mem: -1}), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, Pick(tt.policy, tt.zone, tt.cands))
		})
	}
}

// A burst of sessions after one reading must not all go to the backend that
// looked idlest: its estimated CPU grows with each session routed to it.
func TestPickSpreadsBurstBetweenReadings(t *testing.T) {
	cs := cands(be{healthy: true, cpu: 0.30, mem: -1, sessions: 10, atMetric: 10},
		be{healthy: true, cpu: 0.50, mem: -1, sessions: 10, atMetric: 10})
	counts := make([]int, 2)
	for i := 0; i < 40; i++ {
		j := Pick(config.PolicyResource, "", cs)
		require.GreaterOrEqual(t, j, 0)
		counts[j]++
		cs[j].Sessions++
	}
	require.Greater(t, counts[1], 0, "the busier backend must get some of the burst: %v", counts)
	require.Greater(t, counts[0], counts[1], "the idler backend gets more: %v", counts)
}

func TestEstimateCPU(t *testing.T) {
	c := cands(be{healthy: true, cpu: 0.2, mem: -1, sessions: 15, atMetric: 10})[0]
	require.InDelta(t, 0.3, estimateCPU(c), 1e-9, "5 more sessions at 0.02 each")
	c = cands(be{healthy: true, cpu: 0.2, mem: -1, sessions: 3, atMetric: 0})[0]
	require.InDelta(t, 0.23, estimateCPU(c), 1e-9, "no sessions at the reading: the default cost")
	c = cands(be{healthy: true, cpu: 0.2, mem: -1, sessions: 2, atMetric: 10})[0]
	require.InDelta(t, 0.2, estimateCPU(c), 1e-9, "sessions that ended do not lower the reading")
}
