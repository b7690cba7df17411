package api

import (
	"testing"

	"github.com/switchyard-db/switchyard/test/testenv"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testenv.IgnoreIdlePoller) }
