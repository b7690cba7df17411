package server

import (
	"time"

	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/observer"
	"github.com/switchyard-db/switchyard/pkg/proxy/backend"
	"go.uber.org/zap"
)

const (
	drainPoll = 100 * time.Millisecond
	// drainForceGrace is how long a session that was told to close (ERR
	// packet at its next idle moment) may take before its sockets are shut.
	drainForceGrace = time.Second
)

// startDrain retires a cluster that a reload removed. Its runtime is already
// closed and no rule routes to it any more; it stays in the topology as
// "draining" while its sessions end: each at its next transaction boundary,
// and those still open after timeout with an ERR packet saying why. Only the
// sessions alive now are drained: if the cluster is added back meanwhile,
// its new sessions are not touched.
func (s *Server) startDrain(name string, gen uint64, timeout time.Duration) {
	sessions := s.sql.ClusterSessions(name)
	s.topo.Publish(&observer.ClusterView{
		Name:       name,
		Generation: gen,
		State:      observer.StateDraining,
		Source:     observer.SourceStatic,
		LastError:  "removed from the configuration",
		UpdatedAt:  time.Now(),
	})
	lg := s.lg.With(zap.String("cluster", name))
	lg.Info("cluster removed: draining its sessions", zap.Int("sessions", len(sessions)), zap.Duration("drain_timeout", timeout))
	for _, ss := range sessions {
		ss.RequestClose()
	}
	s.bgWG.Add(1)
	go func() {
		defer s.bgWG.Done()
		defer func() {
			s.topo.Remove(name, gen)
			// Its series go with it, unless a reload brought the cluster back.
			if s.cm.Current().Cluster(name) == nil {
				s.metrics.DeleteCluster(name)
			}
		}()
		if waitEnded(s.bg.Done(), sessions, timeout) == 0 {
			lg.Info("cluster drained")
			return
		}
		e := &mysql.MySQLError{Code: mysql.ErServerShutdown, State: "08S01",
			Message: "Switchyard: cluster " + name + " was removed from the configuration; reconnect"}
		alive := 0
		for _, ss := range sessions {
			if !ss.Ended() {
				alive++
				ss.CloseWithError(e)
			}
		}
		lg.Warn("drain timeout: closing the sessions still open", zap.Int("sessions", alive))
		if waitEnded(s.bg.Done(), sessions, drainForceGrace) == 0 {
			return
		}
		for _, ss := range sessions {
			if !ss.Ended() {
				ss.Close()
			}
		}
	}()
}

// waitEnded waits up to timeout (or until stop) for the sessions to end and
// returns how many are still alive.
func waitEnded(stop <-chan struct{}, sessions []*backend.Session, timeout time.Duration) int {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	for {
		alive := 0
		for _, ss := range sessions {
			if !ss.Ended() {
				alive++
			}
		}
		if alive == 0 {
			return 0
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			return alive
		case <-stop:
			return alive
		}
	}
}
