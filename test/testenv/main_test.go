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
	if os.Getenv(spinnerEnv) == "1" {
		spinnerMain()
	}
	goleak.VerifyTestMain(Wrap(m))
}
