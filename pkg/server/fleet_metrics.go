package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
)

// fleetCollector exports the coordination backend's and the vote
// coordinator's counters at scrape time.
type fleetCollector struct {
	f *fleetParts

	leader, term, changes, guard, termEnds, stuck, campaignErrs *prometheus.Desc
	rounds, roundTime, votes                                    *prometheus.Desc
}

type statser interface{ Stats() coordination.Stats }

func newFleetCollector(f *fleetParts) *fleetCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("switchyard_ha_"+name, help, labels, nil)
	}
	return &fleetCollector{
		f:            f,
		leader:       d("leader", "1 while this node leads the role.", "role"),
		term:         d("term", "This node's current or last term (the leader key's create revision) for the role.", "role"),
		changes:      d("leader_changes_total", "Times this node won or lost the role.", "role"),
		guard:        d("guard_margin_seconds", "At the last renewal, time left before the term's lease could expire.", "role"),
		termEnds:     d("term_ends_total", "Terms this node ended, by reason.", "reason"),
		stuck:        d("stuck_terms_total", "Terms whose leader-only work outlived the stop budget."),
		campaignErrs: d("campaign_errors_total", "Failed campaign attempts."),
		rounds:       d("vote_rounds_total", "Vote rounds this node ran as prober leader, by result (approved or the reason it was blocked).", "result"),
		roundTime:    d("vote_round_seconds_total", "Total time spent in vote rounds."),
		votes:        d("votes_total", "Votes collected in rounds, by value.", "vote"),
	}
}

func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.leader, c.term, c.changes, c.guard, c.termEnds, c.stuck, c.campaignErrs, c.rounds, c.roundTime, c.votes} {
		ch <- d
	}
}

func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	if s, ok := c.f.store.(statser); ok {
		st := s.Stats()
		for _, r := range st.Roles {
			leader := 0.0
			if r.Leader {
				leader = 1
			}
			ch <- prometheus.MustNewConstMetric(c.leader, prometheus.GaugeValue, leader, r.Role)
			ch <- prometheus.MustNewConstMetric(c.term, prometheus.GaugeValue, float64(r.Term), r.Role)
			ch <- prometheus.MustNewConstMetric(c.changes, prometheus.CounterValue, float64(r.LeaderChanges), r.Role)
			ch <- prometheus.MustNewConstMetric(c.guard, prometheus.GaugeValue, r.GuardRemaining.Seconds(), r.Role)
		}
		for reason, n := range st.TermEnds {
			ch <- prometheus.MustNewConstMetric(c.termEnds, prometheus.CounterValue, float64(n), reason)
		}
		ch <- prometheus.MustNewConstMetric(c.stuck, prometheus.CounterValue, float64(st.Stuck))
		ch <- prometheus.MustNewConstMetric(c.campaignErrs, prometheus.CounterValue, float64(st.CampaignErrors))
	}
	vs := c.f.coord.Stats()
	for result, n := range vs.Rounds {
		ch <- prometheus.MustNewConstMetric(c.rounds, prometheus.CounterValue, float64(n), result)
	}
	ch <- prometheus.MustNewConstMetric(c.roundTime, prometheus.CounterValue, vs.RoundTime.Seconds())
	for vote, n := range vs.Votes {
		ch <- prometheus.MustNewConstMetric(c.votes, prometheus.CounterValue, float64(n), vote)
	}
}
