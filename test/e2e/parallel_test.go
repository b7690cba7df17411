package e2e

import (
	"sync"
	"testing"
)

// The end-to-end suite runs its tests one after another, except for one
// pairing that keeps CI under its time budget: TestFleetEtcdLeaderLoss
// spends most of its ~200 s waiting out etcd lease TTLs (20 runs of a kill,
// an election and a TTL's wait) and uses little CPU, so a few long tests run
// beside it instead of after it. They run one at a time among themselves, so
// at most two tests of the suite run at once, and never two of these.
//
// Both kinds call t.Parallel, so they start once every serial test is done;
// `make e2e` passes -parallel 4 so that the waiting ones do not hold back the
// leader-loss test (with go test's default of GOMAXPROCS slots it still
// works, with less overlap). None of them shares a process with another: each
// starts its own etcd and proxies, and the shared MariaDB only serves SELECTs.

// besideLeaderLossMu lets one of the tests that run beside
// TestFleetEtcdLeaderLoss run at a time.
var besideLeaderLossMu sync.Mutex

// runBesideLeaderLoss marks a long test that runs beside
// TestFleetEtcdLeaderLoss, one at a time with the others so marked.
func runBesideLeaderLoss(t *testing.T) {
	t.Parallel()
	besideLeaderLossMu.Lock()
	// Registered first, so it runs after the test's own clean-ups (which stop
	// its processes).
	t.Cleanup(besideLeaderLossMu.Unlock)
}
