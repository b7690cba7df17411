package backend

import (
	"testing"
	"time"

	"github.com/switchyard-db/switchyard/test/testenv"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Every test that idles a session past a few round trips parks it, so
	// that each wake path is exercised on parked sessions too.
	parkAfter = 30 * time.Millisecond
	// The idle poller's goroutine lives as long as the process.
	goleak.VerifyTestMain(m, testenv.IgnoreIdlePoller)
}
