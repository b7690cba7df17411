package router

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// downFor is how long a backend that refused a connection is skipped. The
// health prober of the multi-cluster runtime replaces this guess with real
// probes; until then one refused dial must not send every new session into
// the same wall.
const downFor = 2 * time.Second

// Static routes to a fixed list of backends of one cluster, choosing the
// reachable backend with the fewest sessions.
type Static struct {
	cluster  string
	backends []*staticBackend
	now      func() time.Time
}

type staticBackend struct {
	id, addr string
	sessions atomic.Int64
	// downUntil is a UnixNano timestamp; 0 means healthy.
	downUntil atomic.Int64
}

// NewStatic builds a router over addrs of the named cluster.
func NewStatic(cluster string, addrs []string) *Static {
	s := &Static{cluster: cluster, now: time.Now}
	for _, a := range addrs {
		s.backends = append(s.backends, &staticBackend{id: cluster + "/" + a, addr: a})
	}
	return s
}

var _ Router = (*Static)(nil)

// Route implements Router.
func (s *Static) Route(_ ClientInfo, exclude []string) (Lease, error) {
	now := s.now().UnixNano()
	var best *staticBackend
	bestScore := int64(math.MaxInt64)
	for _, b := range s.backends {
		if excluded(b.id, exclude) {
			continue
		}
		score := b.sessions.Load()
		if b.downUntil.Load() > now {
			// Still a candidate, but only when nothing healthy is left.
			score += math.MaxInt64 / 2
		}
		if score < bestScore {
			best, bestScore = b, score
		}
	}
	if best == nil {
		return nil, ErrNoBackend
	}
	best.sessions.Add(1)
	return &staticLease{b: best, cluster: s.cluster, router: s}, nil
}

// Sessions returns the number of sessions per backend address.
func (s *Static) Sessions() map[string]int64 {
	out := make(map[string]int64, len(s.backends))
	for _, b := range s.backends {
		out[b.addr] = b.sessions.Load()
	}
	return out
}

func excluded(id string, exclude []string) bool {
	for _, e := range exclude {
		if e == id {
			return true
		}
	}
	return false
}

type staticLease struct {
	b       *staticBackend
	cluster string
	router  *Static
	once    sync.Once
}

func (l *staticLease) ID() string      { return l.b.id }
func (l *staticLease) Addr() string    { return l.b.addr }
func (l *staticLease) Cluster() string { return l.cluster }

func (l *staticLease) Failed(error) {
	l.b.downUntil.Store(l.router.now().Add(downFor).UnixNano())
	l.Release()
}

func (l *staticLease) Release() {
	l.once.Do(func() { l.b.sessions.Add(-1) })
}
