package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard/lib/api"
)

const checksum = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func ptr[T any](v T) *T { return &v }

var (
	healthyDoc = api.Health{
		Status:         api.StatusHealthy,
		ConfigChecksum: checksum,
		Clusters:       map[string]string{"west": "stale", "east": "ready"},
		Warnings:       []string{"cluster west is stale: etcd 127.0.0.1:2379 unreachable: context deadline exceeded"},
	}
	drainedDoc = api.Health{
		Status:          api.StatusUnhealthy,
		ConfigChecksum:  checksum,
		UnhealthyReason: "upgrade to v2",
		Clusters:        map[string]string{"east": "ready", "west": "ready"},
	}
	clustersDoc = []api.Cluster{
		{Name: "east", State: "ready", Source: "etcd", EtcdEndpoints: []string{"127.0.0.1:2379"},
			TopologyPrefix: "/topology/tidb", EtcdRevision: 41, BackendsTotal: 2, BackendsHealthy: 2,
			Sessions: 3, Generation: 7, UpdatedAt: now.Add(-time.Minute)},
		{Name: "legacy", State: "ready", Source: "static", BackendsTotal: 1, BackendsHealthy: 1,
			Generation: 1, UpdatedAt: now.Add(-time.Hour)},
		{Name: "west", State: "stale", Source: "etcd", EtcdEndpoints: []string{"127.0.0.1:2381"},
			LastError: "etcd unreachable:\n\tcontext deadline exceeded", BackendsTotal: 1, BackendsHealthy: 0,
			Generation: 2, UpdatedAt: now.Add(-10 * time.Second)},
	}
	backendsDoc = []api.Backend{
		{ID: "east/10.0.0.1:4000", Cluster: "east", Addr: "10.0.0.1:4000", StatusPort: 10080,
			Version: "8.0.11-TiDB-v7.5.0", Healthy: true, Sessions: 2, CPU: ptr(0.42), Memory: ptr(0.613),
			LastProbe: ptr(now.Add(-time.Second))},
		{ID: "east/10.0.0.2:4000", Cluster: "east", Addr: "10.0.0.2:4000", Version: "8.0.11-TiDB-v7.5.0",
			Healthy: false, Reason: "SQL handshake: connection refused", Sessions: 1},
		{ID: "west/10.0.1.1:3306", Cluster: "west", Addr: "10.0.1.1:3306", Healthy: true, CPU: ptr(0.05),
			Labels: map[string]string{"zone": "b"}},
	}
	sessionsDoc = []api.Session{
		{ID: 1, ClientAddr: "10.1.0.5:51234", User: "app", DB: "shop", Cluster: "east",
			Backend: "east/10.0.0.1:4000", Since: now.Add(-42 * time.Second), Migratable: true},
		{ID: 7, ClientAddr: "10.1.0.6:40000", User: "batch", Cluster: "east",
			Backend: "east/10.0.0.2:4000", InTransaction: true, Since: now.Add(-(5*time.Minute + 3*time.Second)),
			NotMigratableReason: "in a transaction"},
		{ID: 12, ClientAddr: "[::1]:60000", User: "root", Cluster: "west",
			Backend: "west/10.0.1.1:3306", Since: now.Add(-26 * time.Hour), NotMigratableReason: "holds LOCK TABLES"},
	}
	statusDoc = api.ConfigStatus{
		Checksum: checksum, Path: "/etc/switchyard/proxy.toml",
		LastReload: now.Add(-90 * time.Second), LastResult: "ok", LastSource: "api",
		LastSuccess: now.Add(-90 * time.Second), NeedsRestart: []string{"api.addr", "proxy.addr"},
		Reloads: 3, Failures: 1,
	}
	configTOML = "[proxy]\naddr = \"0.0.0.0:6000\"\n\n[api]\naddr = \"127.0.0.1:3080\"\ntoken = \"<redacted>\"\n\n" +
		"[[cluster]]\nname = \"east\"\netcd-endpoints = [\"127.0.0.1:2379\"]\n"
	configJSON = `{"api":{"addr":"127.0.0.1:3080","token":"<redacted>"},"cluster":[{"name":"east"}]}`
)

// cannedAPI is a fake API answering every endpoint proxyctl uses.
func cannedAPI(t *testing.T) *fakeAPI {
	f := newFakeAPI(t)
	f.set("GET", pathHealth, jsonReply(t, http.StatusOK, healthyDoc))
	f.set("PUT", pathOverride, jsonReply(t, http.StatusServiceUnavailable, drainedDoc))
	f.set("DELETE", pathOverride, jsonReply(t, http.StatusOK, healthyDoc))
	f.set("GET", "/api/v1/clusters", jsonReply(t, http.StatusOK, clustersDoc))
	f.set("GET", "/api/v1/clusters/east", jsonReply(t, http.StatusOK, clustersDoc[0]))
	f.set("GET", "/api/v1/backends", jsonReply(t, http.StatusOK, backendsDoc))
	f.set("GET", "/api/v1/clusters/west/backends", jsonReply(t, http.StatusOK, backendsDoc[2:]))
	f.set("GET", "/api/v1/sessions", jsonReply(t, http.StatusOK, sessionsDoc))
	f.set("GET", pathConfigStatus, jsonReply(t, http.StatusOK, statusDoc))
	f.set("PUT", pathConfig, jsonReply(t, http.StatusOK, statusDoc))
	f.set("GET", pathConfig, reply{status: http.StatusOK, contentType: "application/toml", body: configTOML, asJSON: configJSON})
	f.set("GET", "/api/v1/ha/leader", jsonReply(t, http.StatusOK, leaderDoc))
	f.set("GET", "/api/v1/ha/members", jsonReply(t, http.StatusOK, membersDoc))
	f.set("POST", pathDrainEast, jsonReply(t, http.StatusOK, drainDoc))
	f.set("DELETE", pathDrainEast, jsonReply(t, http.StatusOK, undrainDoc))
	f.set("GET", "/api/v1/migrations", jsonReply(t, http.StatusOK, migrationsDoc))
	return f
}

const pathDrainEast = "/api/v1/backends/east/10.0.0.1:4000/drain"

var (
	drainSince    = now.Add(-30 * time.Second)
	drainDeadline = now.Add(60 * time.Second)
	wasDrained    = true
	drainDoc      = api.BackendDrain{ID: "east/10.0.0.1:4000", Cluster: "east", Addr: "10.0.0.1:4000",
		Drained: true, Since: &drainSince, Deadline: &drainDeadline, Sessions: 12}
	undrainDoc = api.BackendDrain{ID: "east/10.0.0.1:4000", Cluster: "east", Addr: "10.0.0.1:4000",
		Sessions: 3, WasDrained: &wasDrained}
	migrationsDoc = api.MigrationsDoc{
		Pending: 2, Totals: map[string]int64{"ok": 40, "closed": 1},
		Drains: []api.BackendDrain{drainDoc},
		Recent: []api.Migration{
			{Time: now.Add(-2 * time.Second), SessionID: 7, Cluster: "east", From: "10.0.0.1:4000",
				Reason: "drain", Result: "closed", Error: "holds GET_LOCK"},
			{Time: now.Add(-5 * time.Second), SessionID: 3, Cluster: "east", From: "10.0.0.1:4000", To: "10.0.0.2:4000",
				Reason: "drain", Result: "ok", DurationMS: 2.5},
		},
	}
)

var leaderDoc = api.LeaderAnswer{
	Role: "fleet", LeaderID: "node-a", Term: 42,
	Endpoints: api.Endpoints{SQL: "10.0.0.1:6000", API: "10.0.0.1:3080"},
	ServedBy:  "node-b", Mode: "etcd",
}

var memberStart = time.Date(2026, 11, 24, 7, 0, 0, 0, time.UTC)

var membersDoc = []api.MemberAnswer{
	{ID: "node-a", Valid: true, Endpoints: &api.Endpoints{SQL: "10.0.0.1:6000", API: "10.0.0.1:3080"},
		State: "up", Version: "v1.0.0", Zone: "z1", Clusters: []string{"east"}, StartTime: &memberStart, LeaseTTL: 9},
	{ID: "node-b", Valid: false, Error: "node node-b: info has no valid api_port", LeaseTTL: 4},
}
