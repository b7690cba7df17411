package vote

import (
	"time"

	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
)

// downRateWindow is the window of CoordinatorOptions.MaxDownPerMinute.
const downRateWindow = time.Minute

// guard returns why a proposal must not go ahead, or "".
func (c *Coordinator) guard(cluster, addr, state string, healthy func(except string) int) string {
	if state != coordination.VerdictDown {
		return ""
	}
	if healthy(addr) < 1 {
		return BlockedLastBackend
	}
	if n, _ := c.downsInWindow(cluster); n >= c.opts.MaxDownPerMinute {
		return BlockedRateLimit
	}
	return ""
}

// downsInWindow counts the down verdicts of cluster decided in the last
// minute: those this node wrote and those in the store (written by an
// earlier leader), and says when the oldest leaves the window.
func (c *Coordinator) downsInWindow(cluster string) (int, time.Time) {
	now := c.now()
	seen := map[string]bool{}
	var oldest time.Time
	count := func(round string, at time.Time) {
		if seen[round] || now.Sub(at) >= downRateWindow {
			return
		}
		seen[round] = true
		if oldest.IsZero() || at.Before(oldest) {
			oldest = at
		}
	}
	c.mu.Lock()
	kept := c.downs[cluster][:0]
	for _, m := range c.downs[cluster] {
		if now.Sub(m.at) < downRateWindow {
			kept = append(kept, m)
			count(m.round, m.at)
		}
	}
	c.downs[cluster] = kept
	c.mu.Unlock()
	for _, v := range c.backend.Verdicts() {
		if v.Cluster == cluster && v.State == coordination.VerdictDown {
			count(v.Round, v.DecidedAt)
		}
	}
	return len(seen), oldest.Add(downRateWindow)
}
