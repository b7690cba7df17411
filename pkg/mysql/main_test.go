package mysql

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/switchyard-db/switchyard/test/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(testenv.Wrap(m))
}
