package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// module is this repository's module path.
const module = "github.com/switchyard-db/switchyard/"

// proxyctl is a client of the HTTP API: it decodes the API's documents from
// lib/api and must not link the proxy, its etcd client or gRPC (issue 15).
// The one part of the proxy it runs itself is the traffic replay
// (pkg/traffic, which normalises statements with pkg/sqlstats and rebuilds
// text-protocol rows with the pkg/mysql codec to checksum them).
func TestProxyctlLinksNoEtcdOrGRPC(t *testing.T) {
	goBin, err := exec.LookPath("go")
	require.NoError(t, err, "this test lists proxyctl's dependencies with the go command")
	out, err := exec.Command(goBin, "list", "-deps", "-f", "{{.ImportPath}}", ".").CombinedOutput()
	require.NoError(t, err, "go list: %s", out)
	deps := strings.Fields(string(out))
	require.Contains(t, deps, module+"lib/api", "the listing names proxyctl's dependencies")

	allowed := map[string]bool{
		module + "cmd/proxyctl": true,
		module + "pkg/traffic":  true,
		module + "pkg/sqlstats": true,
		module + "pkg/mysql":    true,
	}
	for _, d := range deps {
		require.NotContains(t, d, "etcd", "proxyctl links %s", d)
		require.NotContains(t, d, "grpc", "proxyctl links %s", d)
		if rest, ok := strings.CutPrefix(d, module); ok && !allowed[d] {
			require.True(t, strings.HasPrefix(rest, "lib/"), "proxyctl imports %s; it may import lib/* only", d)
		}
	}
}
