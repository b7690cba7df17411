package testenv

import "go.uber.org/goleak"

// IgnoreIdlePoller is the goleak option for the proxy's idle poller: one
// goroutine per process, started by the first session that idles, that waits
// in epoll_wait for the life of the process (pkg/proxy/backend).
var IgnoreIdlePoller = goleak.IgnoreAnyFunction("github.com/switchyard-db/switchyard/pkg/proxy/backend.(*idlePoller).loop")
