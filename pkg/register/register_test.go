package register

import (
	"context"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard/pkg/topology"

	"github.com/stretchr/testify/require"
	"github.com/switchyard-db/switchyard/test/etcdtest"
	"github.com/switchyard-db/switchyard/test/testenv"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const (
	waitFor = 30 * time.Second
	tick    = 50 * time.Millisecond
)

// registered waits for both keys of addr and returns the info value and the
// ttl key's lease.
func registered(t *testing.T, te *etcdtest.Etcd, prefix, addr string) (info string, lease clientv3.LeaseID) {
	t.Helper()
	require.Eventually(t, func() bool {
		var okInfo, okTTL bool
		info, _, okInfo = get(t, te, prefix+"/"+addr+"/info")
		_, lease, okTTL = get(t, te, prefix+"/"+addr+"/ttl")
		return okInfo && okTTL
	}, waitFor, tick, "%s was not registered", addr)
	return info, lease
}

func jsonKeys(t *testing.T, s string) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	tok, err := dec.Token()
	require.NoError(t, err)
	require.Equal(t, json.Delim('{'), tok)
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		require.NoError(t, err)
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		require.NoError(t, dec.Decode(&skip))
	}
	return keys
}

func TestRegistersLikeTiDB(t *testing.T) {
	te := etcdtest.Start(t)
	be := startBackend(t, "8.0.36-fake")
	r := startRegistrar(t, Config{
		EtcdEndpoints: []string{te.Endpoint},
		Addr:          be.addr(),
		Labels:        map[string]string{"zone": "z1"},
	})
	info, lease := registered(t, te, DefaultPrefix, be.addr())
	// Registration reads the greeting first; only a probe slower than its
	// timeout would register "unknown" and correct it a moment later.
	require.Eventually(t, func() bool {
		info, _, _ = get(t, te, DefaultPrefix+"/"+be.addr()+"/info")
		return strings.Contains(info, `"version":"8.0.36-fake"`)
	}, waitFor, tick)

	require.Equal(t, []string{"version", "git_hash", "ip", "status_port", "deploy_path", "start_timestamp", "labels"},
		jsonKeys(t, info), "the field order of TiDB's info")
	var got topology.Info
	require.NoError(t, json.Unmarshal([]byte(info), &got))
	require.Equal(t, "8.0.36-fake", got.Version, "the version comes from the greeting")
	require.Equal(t, "127.0.0.1", got.IP)
	require.Equal(t, uint(r.StatusAddr().(*net.TCPAddr).Port), got.StatusPort)
	require.Equal(t, map[string]string{"zone": "z1"}, got.Labels)
	require.NotEmpty(t, got.DeployPath)
	require.InDelta(t, time.Now().Unix(), got.StartTimestamp, 120)

	_, infoLease, _ := get(t, te, DefaultPrefix+"/"+be.addr()+"/info")
	require.Zero(t, infoLease, "info is written without a lease")
	require.NotZero(t, lease, "ttl is written under a lease")
	ttlVal, _, _ := get(t, te, DefaultPrefix+"/"+be.addr()+"/ttl")
	ns, err := strconv.ParseInt(ttlVal, 10, 64)
	require.NoError(t, err, "ttl holds UnixNano")
	require.InDelta(t, time.Now().UnixNano(), ns, float64(2*time.Minute))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ttl, err := te.Client.TimeToLive(ctx, lease, clientv3.WithAttachedKeys())
	require.NoError(t, err)
	require.EqualValues(t, 5, ttl.GrantedTTL)
	require.Len(t, ttl.Keys, 1)
	require.Equal(t, DefaultPrefix+"/"+be.addr()+"/ttl", string(ttl.Keys[0]))
}

func TestConfiguredVersionAndPrefix(t *testing.T) {
	te := etcdtest.Start(t)
	startRegistrar(t, Config{
		EtcdEndpoints: []string{te.Endpoint},
		Prefix:        "/keyspaces/tidb/ks1/topology/tidb/",
		Addr:          "db1.example:3306", // never dialled: the version is configured
		Version:       "10.11.6-MariaDB",
	})
	info, _ := registered(t, te, "/keyspaces/tidb/ks1/topology/tidb", "db1.example:3306")
	var got topology.Info
	require.NoError(t, json.Unmarshal([]byte(info), &got))
	require.Equal(t, "10.11.6-MariaDB", got.Version)
	require.Equal(t, "db1.example", got.IP)
	require.Equal(t, map[string]string{}, got.Labels, `"labels":{} like TiDB, not null`)
}

// A backend that is down at start-up is registered as "unknown" and its
// version is filled in once it answers.
func TestVersionLearnedLater(t *testing.T) {
	te := etcdtest.Start(t)
	// A free loopback port, where the backend comes up later.
	addr := testenv.FreeAddr(t)
	startRegistrar(t, Config{EtcdEndpoints: []string{te.Endpoint}, Addr: addr})
	info, _ := registered(t, te, DefaultPrefix, addr)
	require.Contains(t, info, `"version":"unknown"`)

	startBackendAt(t, addr, "5.5.5-10.11.6-MariaDB")
	require.Eventually(t, func() bool {
		info, _, _ := get(t, te, DefaultPrefix+"/"+addr+"/info")
		return strings.Contains(info, `"version":"5.5.5-10.11.6-MariaDB"`)
	}, waitFor, tick)
}

// Cancelling removes exactly this registrar's two keys and revokes its lease.
func TestCancelRemovesOnlyOwnKeys(t *testing.T) {
	te := etcdtest.Start(t)
	a := startRegistrar(t, Config{EtcdEndpoints: []string{te.Endpoint}, Addr: "127.0.0.1:4001", Version: "a"})
	startRegistrar(t, Config{EtcdEndpoints: []string{te.Endpoint}, Addr: "127.0.0.1:4002", Version: "b"})
	// Keys that share a string prefix with ours must survive too.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, k := range []string{DefaultPrefix + "/127.0.0.1:40011/info", DefaultPrefix + "/127.0.0.1:4001/info2"} {
		_, err := te.Client.Put(ctx, k, "x")
		require.NoError(t, err)
	}
	_, leaseA := registered(t, te, DefaultPrefix, "127.0.0.1:4001")
	registered(t, te, DefaultPrefix, "127.0.0.1:4002")

	require.NoError(t, a.stop())
	for _, k := range []string{"/info", "/ttl"} {
		_, _, found := get(t, te, DefaultPrefix+"/127.0.0.1:4001"+k)
		require.False(t, found, k)
		_, _, found = get(t, te, DefaultPrefix+"/127.0.0.1:4002"+k)
		require.True(t, found, "the other registrar's "+k)
	}
	for _, k := range []string{DefaultPrefix + "/127.0.0.1:40011/info", DefaultPrefix + "/127.0.0.1:4001/info2"} {
		_, _, found := get(t, te, k)
		require.True(t, found, k)
	}
	ttl, err := te.Client.TimeToLive(ctx, leaseA)
	require.NoError(t, err)
	require.EqualValues(t, -1, ttl.TTL, "the lease is revoked")
}

// A successor registered for the same address (its ttl key under another
// lease) keeps its keys when the old registrar stops.
func TestCancelLeavesSuccessorKeys(t *testing.T) {
	te := etcdtest.Start(t)
	const addr = "127.0.0.1:4003"
	a := startRegistrar(t, Config{EtcdEndpoints: []string{te.Endpoint}, Addr: addr, Version: "old"})
	registered(t, te, DefaultPrefix, addr)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g, err := te.Client.Grant(ctx, 60)
	require.NoError(t, err)
	_, err = te.Client.Put(ctx, DefaultPrefix+"/"+addr+"/info", `{"version":"new"}`)
	require.NoError(t, err)
	_, err = te.Client.Put(ctx, DefaultPrefix+"/"+addr+"/ttl", "1", clientv3.WithLease(g.ID))
	require.NoError(t, err)

	require.NoError(t, a.stop())
	info, _, found := get(t, te, DefaultPrefix+"/"+addr+"/info")
	require.True(t, found)
	require.Equal(t, `{"version":"new"}`, info)
	_, lease, found := get(t, te, DefaultPrefix+"/"+addr+"/ttl")
	require.True(t, found)
	require.Equal(t, g.ID, lease)
}

// A lease revoked from outside (what expiry looks like to the holder) is
// replaced by a new one and both keys are written again.
func TestReRegistersAfterLeaseLoss(t *testing.T) {
	te := etcdtest.Start(t)
	const addr = "127.0.0.1:4004"
	startRegistrar(t, Config{EtcdEndpoints: []string{te.Endpoint}, Addr: addr, Version: "v"})
	_, first := registered(t, te, DefaultPrefix, addr)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Deleting info too (before the revocation, which the registrar reacts
	// to) shows that re-registration rewrites both keys.
	_, err := te.Client.Delete(ctx, DefaultPrefix+"/"+addr+"/info")
	require.NoError(t, err)
	_, err = te.Client.Revoke(ctx, first)
	require.NoError(t, err)

	require.Eventually(t, func() bool {
		_, lease, okTTL := get(t, te, DefaultPrefix+"/"+addr+"/ttl")
		_, _, okInfo := get(t, te, DefaultPrefix+"/"+addr+"/info")
		return okTTL && okInfo && lease != first
	}, waitFor, tick)
}

// The sidecar may start before etcd: it keeps retrying and registers once
// etcd is up.
func TestRegistersWhenEtcdComesUp(t *testing.T) {
	te := etcdtest.Reserve(t)
	const addr = "127.0.0.1:4005"
	r := startRegistrar(t, Config{EtcdEndpoints: []string{te.Endpoint}, Addr: addr, Version: "v"})
	te.Launch(t)
	registered(t, te, DefaultPrefix, addr)
	require.NoError(t, r.stop(), "stopped while etcd is still up")
	_, _, found := get(t, te, DefaultPrefix+"/"+addr+"/ttl")
	require.False(t, found)
}

// An etcd that restarts empty (its data lost) gets the registration back.
func TestReRegistersAfterEtcdRestartsEmpty(t *testing.T) {
	te := etcdtest.Start(t)
	const addr = "127.0.0.1:4006"
	r := startRegistrar(t, Config{EtcdEndpoints: []string{te.Endpoint}, Addr: addr, Version: "v"})
	registered(t, te, DefaultPrefix, addr)

	te.RestartEmpty(t)
	registered(t, te, DefaultPrefix, addr)
	require.NoError(t, r.stop())
}

func TestRunFailsWhenStatusAddrIsTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	r, err := New(zapNop(), Config{EtcdEndpoints: []string{"127.0.0.1:1"}, Addr: "127.0.0.1:3306", StatusAddr: ln.Addr().String()})
	require.NoError(t, err)
	require.ErrorContains(t, r.Run(context.Background()), "listen on status address")
	require.Nil(t, r.StatusAddr())
	require.ErrorContains(t, r.Run(context.Background()), "called twice")
}
