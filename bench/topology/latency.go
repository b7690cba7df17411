package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/health"
	"github.com/switchyard-db/switchyard/pkg/manager/backendcluster"
	"github.com/switchyard-db/switchyard/pkg/observer"
	"github.com/switchyard-db/switchyard/pkg/router"
	"github.com/switchyard-db/switchyard/test/etcdtest"
	"github.com/switchyard-db/switchyard/test/mysqldouble"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

const latencyCluster = "bench"

// waitTimeout bounds every wait for the proxy to notice a change; hitting it
// ends the benchmark with an error rather than recording a bogus sample.
const waitTimeout = 30 * time.Second

// latencyResult holds one series per measured step.
type latencyResult struct {
	Rounds         int
	HealthInterval time.Duration
	Etcd           string
	PutRTT         summary // etcd Put of the ttl key, until acknowledged
	Routable       summary // ttl Put issued -> Route returns the backend
	Probed         summary // ttl Put issued -> first probe verdict published
	DeleteRTT      summary // etcd Delete of the ttl key, until acknowledged
	Gone           summary // ttl Delete issued -> backend gone from the view
	OtherPct       float64 // other processes' CPU during the rounds, % of the machine; -1 unknown
}

// runLatency measures how fast a registration becomes routable and a
// deregistration stops routing, through the real Manager, Aggregator and
// router, against an embedded etcd.
func runLatency(ctx context.Context, lg *zap.Logger, rounds int, healthInterval, quietWait time.Duration, quietPct float64) (*latencyResult, error) {
	etcd, err := startEmbeddedEtcd()
	if err != nil {
		return nil, err
	}
	defer etcd.Stop()
	be, err := mysqldouble.New(mysqldouble.Config{})
	if err != nil {
		return nil, err
	}
	if err := be.Listen(); err != nil {
		return nil, err
	}
	defer be.Close()
	cli, err := newEtcdClient(etcd.Endpoint)
	if err != nil {
		return nil, err
	}
	defer cli.Close()

	cfg := config.NewDefault()
	cfg.HealthCheck.Interval = config.NewDuration(healthInterval)
	cfg.Clusters = []config.Cluster{{
		Name:           latencyCluster,
		EtcdEndpoints:  []string{etcd.Endpoint},
		TopologyPrefix: config.DefaultTopologyPrefix,
	}}
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	agg := observer.NewAggregator()
	wake, unsubscribe := agg.Subscribe()
	defer unsubscribe()
	mgr := backendcluster.NewManager(lg, agg)
	defer mgr.Close()
	if res := mgr.Apply(cfg); len(res.Failed) > 0 {
		return nil, fmt.Errorf("apply: %v", res.Failed)
	}
	rt := router.NewBalanced(agg, cfg)
	if err := waitFor(ctx, wake, waitTimeout, "cluster ready", func() bool {
		v := agg.Topology().Cluster(latencyCluster)
		return v != nil && v.State == observer.StateReady
	}); err != nil {
		return nil, err
	}

	addr := be.Addr()
	prefix := config.DefaultTopologyPrefix + "/" + addr
	info := etcdtest.InfoJSON("8.0.11-TiDB-v8.5.0", 0, "")
	var putRTT, routable, probed, delRTT, gone []time.Duration
	view := func() *observer.ClusterView { return agg.Topology().Cluster(latencyCluster) }
	if quietWait > 0 {
		fmt.Fprintf(os.Stderr, "topology: waiting up to %s for other processes to use < %.0f %% of the machine\n", quietWait, quietPct)
		waitQuiet(ctx, quietWait, quietPct)
	}
	busy0, _, total0, statOK := machineCPU()
	self0 := selfCPU()
	// Round 0 is a warm-up (first connections, first allocations) and is
	// not recorded.
	for round := range rounds + 1 {
		opctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		// Like TiDB: info without a lease, then ttl under one.
		_, err := cli.Put(opctx, prefix+"/info", info)
		var lease *clientv3.LeaseGrantResponse
		if err == nil {
			lease, err = cli.Grant(opctx, 60)
		}
		if err != nil {
			cancel()
			return nil, fmt.Errorf("round %d: register: %w", round, err)
		}
		drain(wake)
		t0 := time.Now()
		_, err = cli.Put(opctx, prefix+"/ttl", strconv.FormatInt(t0.UnixNano(), 10), clientv3.WithLease(lease.ID))
		dPut := time.Since(t0)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("round %d: put ttl: %w", round, err)
		}
		if err := waitFor(ctx, wake, waitTimeout, "registered backend routable", func() bool {
			l, err := rt.Route(router.ClientInfo{User: "app"}, nil)
			if err != nil {
				return false
			}
			defer l.Release()
			return l.Addr() == addr
		}); err != nil {
			cancel()
			return nil, fmt.Errorf("round %d: %w", round, err)
		}
		dRoutable := time.Since(t0)
		if err := waitFor(ctx, wake, waitTimeout, "first probe verdict", func() bool {
			b := view().Backend(addr)
			return b != nil && b.Health.Reason != health.ErrNotProbed.Error()
		}); err != nil {
			cancel()
			return nil, fmt.Errorf("round %d: %w", round, err)
		}
		dProbed := time.Since(t0)
		if b := view().Backend(addr); !b.Health.Healthy {
			cancel()
			return nil, fmt.Errorf("round %d: backend probed unhealthy: %s", round, b.Health.Reason)
		}

		drain(wake)
		t1 := time.Now()
		_, err = cli.Delete(opctx, prefix+"/ttl")
		dDel := time.Since(t1)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("round %d: delete ttl: %w", round, err)
		}
		if err := waitFor(ctx, wake, waitTimeout, "deregistered backend gone", func() bool {
			return view().Backend(addr) == nil
		}); err != nil {
			cancel()
			return nil, fmt.Errorf("round %d: %w", round, err)
		}
		dGone := time.Since(t1)
		if l, err := rt.Route(router.ClientInfo{User: "app"}, nil); err == nil {
			l.Release()
			cancel()
			return nil, fmt.Errorf("round %d: backend gone from the view but still routable (%s)", round, l.Addr())
		} else if !errors.Is(err, router.ErrNoBackend) {
			cancel()
			return nil, fmt.Errorf("round %d: unexpected route error: %w", round, err)
		}
		// Clean up what a TiDB's lease expiry would leave: the info key.
		_, err = cli.Delete(opctx, prefix+"/info")
		if err == nil {
			_, err = cli.Revoke(opctx, lease.ID)
		}
		cancel()
		if err != nil {
			return nil, fmt.Errorf("round %d: clean up: %w", round, err)
		}
		if round > 0 {
			putRTT, routable, probed = append(putRTT, dPut), append(routable, dRoutable), append(probed, dProbed)
			delRTT, gone = append(delRTT, dDel), append(gone, dGone)
		}
	}
	otherPct := -1.0
	if busy1, _, total1, ok := machineCPU(); ok && statOK && total1 > total0 {
		otherPct = max(0, pct(busy1-busy0-(selfCPU()-self0), total1-total0))
	}
	return &latencyResult{
		OtherPct:       otherPct,
		Rounds:         rounds,
		HealthInterval: healthInterval,
		Etcd:           etcd.Version,
		PutRTT:         summarize(putRTT),
		Routable:       summarize(routable),
		Probed:         summarize(probed),
		DeleteRTT:      summarize(delRTT),
		Gone:           summarize(gone),
	}, nil
}

// waitFor returns when cond holds, re-checking after every topology change
// signalled on wake (never by sleeping), or fails after limit.
func waitFor(ctx context.Context, wake <-chan struct{}, limit time.Duration, what string, cond func() bool) error {
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for !cond() {
		select {
		case <-wake:
		case <-timer.C:
			return fmt.Errorf("%s: not after %s", what, limit)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// drain discards a pending wake-up, so that the next one is caused by what
// happens after this call.
func drain(wake <-chan struct{}) {
	select {
	case <-wake:
	default:
	}
}
