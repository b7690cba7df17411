package server

import (
	"testing"

	"github.com/switchyard-db/switchyard/test/testenv"
	"go.uber.org/goleak"
)

// lumberjack v2 leaves one idle goroutine per log file it opened (see
// docs/ARCHITECTURE.md); the query log reload test opens several.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testenv.IgnoreIdlePoller, goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun"))
}
