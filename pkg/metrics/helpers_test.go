package metrics

import (
	"bytes"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/pkg/observer"
)

// The helpers below do what client_golang's testutil.CollectAndCompare and
// ToFloat64 do. testutil itself cannot be imported: it needs
// github.com/kylelemons/godebug, which this module does not require.

// fakeSource is a Source whose answers a test sets.
type fakeSource struct {
	mu       sync.Mutex
	topo     *observer.Topology
	sessions map[string]int64
	errs     map[string]uint64
}

var _ Source = (*fakeSource)(nil)

func (f *fakeSource) set(topo *observer.Topology, sessions map[string]int64, errs map[string]uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.topo, f.sessions, f.errs = topo, sessions, errs
}

func (f *fakeSource) Topology() *observer.Topology {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.topo
}

func (f *fakeSource) BackendSessions() map[string]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sessions
}

func (f *fakeSource) EtcdErrors() map[string]uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.errs
}

// gatherText renders the named families in the text exposition format.
func gatherText(t testing.TB, g prometheus.Gatherer, names ...string) string {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if slices.Contains(names, mf.GetName()) {
			require.NoError(t, enc.Encode(mf))
		}
	}
	return buf.String()
}

// requireText compares the named families with an expected exposition. The
// expectation is written indented for readability; leading tabs are removed.
func requireText(t testing.TB, g prometheus.Gatherer, want string, names ...string) {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(want), "\n") {
		lines = append(lines, strings.TrimLeft(l, "\t"))
	}
	want = ""
	if len(lines) > 0 && lines[0] != "" {
		want = strings.Join(lines, "\n") + "\n"
	}
	require.Equal(t, want, gatherText(t, g, names...))
}

// family returns the named family, or nil.
func family(t testing.TB, g prometheus.Gatherer, name string) *dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf
		}
	}
	return nil
}

// find returns the series of the named family whose labels are exactly
// labels (label order does not matter), or nil.
func find(t testing.TB, g prometheus.Gatherer, name string, labels ...string) *dto.Metric {
	t.Helper()
	require.Zero(t, len(labels)%2, "labels are name/value pairs")
	mf := family(t, g, name)
	if mf == nil {
		return nil
	}
	want := make(map[string]string, len(labels)/2)
	for i := 0; i < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, m := range mf.GetMetric() {
		got := make(map[string]string, len(m.GetLabel()))
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		if maps.Equal(got, want) {
			return m
		}
	}
	return nil
}

// value is the value of a gauge, counter or untyped series; it fails the test
// when the series does not exist.
func value(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	m := find(t, g, name, labels...)
	require.NotNil(t, m, "no series %s%v", name, labels)
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	t.Fatalf("%s%v is not a gauge, counter or untyped", name, labels)
	return 0
}

// seriesCount counts the series of a family (0 when it is absent).
func seriesCount(t testing.TB, g prometheus.Gatherer, name string) int {
	t.Helper()
	if mf := family(t, g, name); mf != nil {
		return len(mf.GetMetric())
	}
	return 0
}
