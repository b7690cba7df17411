package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/switchyard-db/switchyard/lib/etcdclient"
	"github.com/switchyard-db/switchyard/pkg/register"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

const (
	registerTTL        = 10 * time.Second
	registerReadyLimit = 30 * time.Second
)

// registration is one in-process register.Registrar, what `proxy register`
// runs as a sidecar, keeping one backend registered in its cluster's etcd.
type registration struct {
	r      *register.Registrar
	cancel context.CancelFunc
	wg     sync.WaitGroup
	done   chan struct{} // closed when Run has returned
	err    error         // Run's result, read after done is closed
}

// startRegistration registers b in the etcd at endpoint and serves its status
// port on a free loopback port. It returns once the status port listens.
func startRegistration(lg *zap.Logger, endpoint string, b *backend) (*registration, error) {
	r, err := register.New(lg.With(zap.String("backend", b.name)), register.Config{
		EtcdEndpoints: []string{endpoint},
		Addr:          b.db.Addr(),
		StatusAddr:    "127.0.0.1:0",
		Pid:           b.db.Pid(),
		TTL:           registerTTL,
		Labels:        map[string]string{"zone": b.zone},
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	reg := &registration{r: r, cancel: cancel, done: make(chan struct{})}
	reg.wg.Go(func() {
		defer close(reg.done)
		reg.err = r.Run(ctx)
	})
	select {
	case <-r.Ready():
		return reg, nil
	case <-reg.done:
		cancel()
		return nil, fmt.Errorf("register %s: %w", b.name, reg.err)
	case <-time.After(registerReadyLimit):
		reg.stop()
		return nil, fmt.Errorf("register %s: status port not listening after %s", b.name, registerReadyLimit)
	}
}

// StatusAddr is where /status and /metrics answer.
func (reg *registration) StatusAddr() string { return reg.r.StatusAddr().String() }

// stop deletes the backend's keys, revokes its lease and waits for Run to
// return. It is idempotent.
func (reg *registration) stop() {
	reg.cancel()
	reg.wg.Wait()
}

// waitRegistered polls the cluster's etcd until every backend's info and ttl
// keys are there (the proxy reads the same two), and returns the info values
// by SQL address.
func waitRegistered(ctx context.Context, lg *zap.Logger, endpoint string, addrs []string) (map[string]string, error) {
	cli, err := etcdclient.New(lg, []string{endpoint}, nil)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, registerReadyLimit)
	defer cancel()
	var lastErr error
	for {
		infos, err := readRegistrations(ctx, cli, addrs)
		if err == nil {
			return infos, nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("registrations in %s: %w (last: %v)", endpoint, ctx.Err(), lastErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func readRegistrations(ctx context.Context, cli *clientv3.Client, addrs []string) (map[string]string, error) {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := cli.Get(rctx, register.DefaultPrefix+"/", clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	kvs := make(map[string]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		kvs[string(kv.Key)] = string(kv.Value)
	}
	infos := make(map[string]string, len(addrs))
	var missing []error
	for _, a := range addrs {
		info, ok := kvs[infoKey(a)]
		if _, live := kvs[ttlKey(a)]; !ok || !live {
			missing = append(missing, fmt.Errorf("%s is not registered yet", a))
			continue
		}
		infos[a] = info
	}
	return infos, errors.Join(missing...)
}

func infoKey(addr string) string { return register.DefaultPrefix + "/" + addr + "/info" }
func ttlKey(addr string) string  { return register.DefaultPrefix + "/" + addr + "/ttl" }
