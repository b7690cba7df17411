package testenv

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(fakeProxyEnv) == "1" {
		os.Exit(fakeProxyMain())
	}
	goleak.VerifyTestMain(Wrap(m))
}
