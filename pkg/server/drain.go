package server

import (
	"time"

	"github.com/switchyard-db/switchyard/pkg/observer"
	pnet "github.com/switchyard-db/switchyard/pkg/proxy/net"
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
				lg.Info("cluster drained")
				return
			}
			select {
			case <-tick.C:
				continue
			case <-deadline.C:
			case <-s.bg.Done():
				return // shutdown closes every session anyway
			}
			lg.Warn("drain timeout: closing the sessions still open", zap.Int("sessions", alive))
			e := &pnet.MySQLError{Code: pnet.ErServerShutdown, State: "08S01",
				Message: "Switchyard: cluster " + name + " was removed from the configuration; reconnect"}
			for _, ss := range sessions {
				if !ss.Ended() {
					ss.CloseWithError(e)
				}
			}
			select {
			case <-time.After(drainForceGrace):
			case <-s.bg.Done():
			}
			for _, ss := range sessions {
				if !ss.Ended() {
					ss.Close()
				}
			}
			return
		}
	}()
}
