package server

import "github.com/switchyard-db/switchyard/pkg/proxy/backend"

// ClusterSessions returns the live sessions routed to cluster (for the
// operator surface and tests that move sessions).
func (s *Server) ClusterSessions(cluster string) []*backend.Session {
	return s.sql.ClusterSessions(cluster)
}
