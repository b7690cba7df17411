package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/switchyard-db/switchyard/lib/api"
	"github.com/switchyard-db/switchyard/test/etcdtest"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// clusterBackendAddrs lists the backends the proxy's API shows for cluster.
func clusterBackendAddrs(apiAddr, cluster string) ([]string, error) {
	resp, err := fleetHTTP.Get("http://" + apiAddr + "/api/v1/clusters/" + cluster + "/backends")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET backends of %s: %s", cluster, resp.Status)
	}
	var bs []api.Backend
	if err := json.NewDecoder(resp.Body).Decode(&bs); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(bs))
	for _, b := range bs {
		out = append(out, b.Addr)
	}
	slices.Sort(out)
	return out, nil
}

// etcdTruth is the live backend set under prefix in etcd: the addresses
// with both an info and a ttl key.
func etcdTruth(t *testing.T, cli *clientv3.Client, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, prefix+"/", clientv3.WithPrefix())
	require.NoError(t, err)
	kinds := map[string]int{}
	for _, kv := range resp.Kvs {
		rest := strings.TrimPrefix(string(kv.Key), prefix+"/")
		addr, kind, _ := strings.Cut(rest, "/")
		if kind == "info" || kind == "ttl" {
			kinds[addr]++
		}
	}
	var out []string
	for addr, n := range kinds {
		if n == 2 {
			out = append(out, addr)
		}
	}
	slices.Sort(out)
	return out
}

// #13 (ha.md section 7): watch compaction while the link to etcd is paused.
// The proxy watches an etcd-discovered cluster's topology through a
// forwarder of the test; the forwarder is paused, the topology churns
// (backends deregistered, new ones registered, an info rewritten, filler
// writes) and etcd is compacted past everything the proxy saw; then the
// link heals. Within 2 s the proxy's backends equal etcd's truth, and no
// delete is missed (a deregistered backend is never listed after the heal).
func TestTopologyWatchCompaction(t *testing.T) {
	etcd := startEtcdProc(t)
	fwd := newTCPFwd(t, etcd.ClientAddr)
	const prefix = "/topology/compaction"
	info := etcdtest.InfoJSON("10.11-MariaDB", 0, "")
	var initial []string
	for range 5 {
		a := testenv.FreeAddr(t)
		initial = append(initial, a)
		etcdtest.Register(t, etcd.Client, prefix, a, info, 120)
	}
	apiAddr := testenv.FreeAddr(t)
	testenv.StartProxy(t, testenv.BuildProxy(t), fmt.Sprintf(`[proxy]
addr = %q
%s
[log]
level = "debug"
[health-check]
interval = "200ms"
timeout = "500ms"
[[cluster]]
name = "disc"
etcd-endpoints = [%q]
topology-prefix = %q
`, testenv.FreeAddr(t), apiTOML(apiAddr), fwd.Addr(), prefix))
	require.Eventually(t, func() bool {
		got, err := clusterBackendAddrs(apiAddr, "disc")
		return err == nil && len(got) == 5
	}, 20*time.Second, 50*time.Millisecond, "the proxy never listed the 5 registered backends")

	pauseAt := time.Now()
	fwd.Pause()
	removed := initial[:2]
	for _, a := range removed {
		etcdtest.Deregister(t, etcd.Client, prefix, a)
	}
	// Gone entirely (info too) for one of them.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := etcd.Client.Delete(ctx, prefix+"/"+removed[0]+"/info")
	require.NoError(t, err)
	var added []string
	for range 3 {
		a := testenv.FreeAddr(t)
		added = append(added, a)
		etcdtest.Register(t, etcd.Client, prefix, a, info, 120)
	}
	_, err = etcd.Client.Put(ctx, prefix+"/"+initial[2]+"/info", etcdtest.InfoJSON("10.11-MariaDB-rewritten", 0, ""))
	require.NoError(t, err)
	var last int64
	for i := range 50 {
		r, err := etcd.Client.Put(ctx, prefix+"/filler/"+fmt.Sprint(i), "x")
		require.NoError(t, err)
		last = r.Header.Revision
	}
	_, err = etcd.Client.Compact(ctx, last, clientv3.WithCompactPhysical())
	require.NoError(t, err)
	during, err := clusterBackendAddrs(apiAddr, "disc")
	require.NoError(t, err)
	want := etcdTruth(t, etcd.Client, prefix)
	require.NotEqual(t, want, during, "the pause must hide the churn from the proxy, or this tests nothing")
	// Long enough for the watcher's retries to back off.
	time.Sleep(time.Until(pauseAt.Add(8 * time.Second)))

	healAt := time.Now()
	fwd.Resume()
	var got []string
	deadline := healAt.Add(20 * time.Second)
	var missedDelete []string
	for {
		got, err = clusterBackendAddrs(apiAddr, "disc")
		if err == nil {
			for _, r := range removed {
				if slices.Contains(got, r) && time.Since(healAt) > 2*time.Second {
					missedDelete = append(missedDelete, r)
				}
			}
			if slices.Equal(got, want) {
				break
			}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	converged := time.Since(healAt)
	t.Logf("measured: paused %v with the churn and a compaction at revision %d; after the heal the proxy matched etcd in %v",
		healAt.Sub(pauseAt).Round(time.Millisecond), last, converged.Round(time.Millisecond))
	require.Equal(t, want, got, "the proxy's backends never matched etcd after the heal")
	require.Empty(t, missedDelete, "deregistered backends still listed 2 s after the heal")
	require.LessOrEqual(t, converged, 2*time.Second, "the target is convergence within 2 s of the heal")
	// Stays equal.
	time.Sleep(500 * time.Millisecond)
	got, err = clusterBackendAddrs(apiAddr, "disc")
	require.NoError(t, err)
	require.Equal(t, want, got)
}
