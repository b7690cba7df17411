package server

import (
	"time"

	"github.com/switchyard-db/switchyard/pkg/manager/backendcluster"
	"github.com/switchyard-db/switchyard/pkg/metrics"
	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/proxy"
	"github.com/switchyard-db/switchyard/pkg/proxy/backend"
)

// clusterDrainer ends the sessions of a cluster a reload removed, for the
// cluster manager, which owns the cluster's "draining" state.
type clusterDrainer struct {
	sql     *proxy.Server
	metrics *metrics.Metrics
}

var _ backendcluster.Drainer = clusterDrainer{}

// DrainCluster drains the sessions of cluster alive now: if the cluster is
// added back meanwhile, its new sessions are not touched.
func (c clusterDrainer) DrainCluster(cluster string, timeout time.Duration) backendcluster.Draining {
	e := &mysql.MySQLError{Code: mysql.ErServerShutdown, State: "08S01",
		Message: "Switchyard: cluster " + cluster + " was removed from the configuration; reconnect"}
	return c.sql.Drain(func(ss *backend.Session) bool { return ss.Info().Cluster == cluster }, timeout, e)
}

// Drained drops the metric series of a cluster that is gone for good.
func (c clusterDrainer) Drained(cluster string) { c.metrics.DeleteCluster(cluster) }
