package backend

import (
	"testing"

	"github.com/switchyard-db/switchyard/test/testenv"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The idle poller's goroutine lives as long as the process.
	goleak.VerifyTestMain(m, testenv.IgnoreIdlePoller)
}
