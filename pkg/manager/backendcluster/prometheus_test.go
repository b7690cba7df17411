package backendcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/switchyard-db/switchyard/pkg/metricsreader"
	"github.com/switchyard-db/switchyard/pkg/observer"
	"github.com/switchyard-db/switchyard/test/etcdtest"
)

// fakePrometheus answers every instant query with one sample of *value for
// instance, in Prometheus's JSON format, and returns its address as TiUP
// records it under /topology/prometheus.
func fakePrometheus(t *testing.T, instance string, value *atomic.Uint64) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		ts := float64(time.Now().UnixMilli()) / 1000
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{
			"resultType": "vector",
			"result": []any{map[string]any{
				"metric": map[string]string{"instance": instance},
				"value":  []any{ts, strconv.FormatFloat(math.Float64frombits(value.Load()), 'g', -1, 64)},
			}},
		}})
	}))
	t.Cleanup(srv.Close)
	host, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	require.NoError(t, err)
	return fmt.Sprintf(`{"ip":%q,"port":%s,"deploy_path":"/tidb-deploy/prometheus-9090"}`, host, port)
}

// The Prometheus a cluster's etcd names is followed by the topology watch:
// a new address is used from the next round, a removed one is not, and the
// last one keeps serving while etcd is down.
func TestPrometheusFollowedFromEtcd(t *testing.T) {
	etcd := etcdtest.Start(t)
	b := backend(t)
	// A status port where nothing listens: only Prometheus can give figures.
	const statusPort = 1
	instance := net.JoinHostPort("127.0.0.1", strconv.Itoa(statusPort))
	var v1, v2 atomic.Uint64
	v1.Store(math.Float64bits(0.25))
	v2.Store(math.Float64bits(0.75))
	p1, p2 := fakePrometheus(t, instance, &v1), fakePrometheus(t, instance, &v2)
	put := func(v string) {
		t.Helper()
		_, err := etcd.Client.Put(context.Background(), prometheusKey, v)
		require.NoError(t, err)
	}
	put(p1)
	etcdtest.Register(t, etcd.Client, prefix, b.Addr(), etcdtest.InfoJSON("v", statusPort, ""), 30)

	e := newEnv(t, etcdCluster("east", etcd))
	e.cfg.Balance.MetricsInterval.Duration = 100 * time.Millisecond
	e.mgr.Apply(e.cfg)
	fromProm := func(cpu float64) func(v *observer.ClusterView) bool {
		return func(v *observer.ClusterView) bool {
			bv := v.Backend(b.Addr())
			return bv != nil && bv.Metrics.Source == metricsreader.SourcePrometheus &&
				bv.Metrics.HasCPU && bv.Metrics.CPU == cpu
		}
	}
	e.view("east", fromProm(0.25), "figures from the Prometheus etcd names")

	put(p2)
	e.view("east", fromProm(0.75), "figures from the Prometheus etcd names now")

	_, err := etcd.Client.Delete(context.Background(), prometheusKey)
	require.NoError(t, err)
	e.view("east", func(v *observer.ClusterView) bool {
		bv := v.Backend(b.Addr())
		return bv != nil && bv.Metrics.Source != metricsreader.SourcePrometheus
	}, "no Prometheus in etcd: no figures from one")

	put(p2)
	e.view("east", fromProm(0.75), "a Prometheus in etcd again")
	etcd.Stop()
	e.view("east", func(v *observer.ClusterView) bool { return v.State == observer.StateStale }, "etcd down: stale")
	v2.Store(math.Float64bits(0.5))
	e.view("east", fromProm(0.5), "etcd down: the last Prometheus it named still answers")
}
