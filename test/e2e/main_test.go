package e2e

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/switchyard-db/switchyard/test/testenv"
)

// allowSkipEnv lets machines without MariaDB skip this package. It is opt-in so that CI, where
// MariaDB is expected, cannot go green by silently running nothing.
const allowSkipEnv = "SWITCHYARD_E2E_ALLOW_SKIP"

func TestMain(m *testing.M) {
	if _, err := testenv.LookupMariaDB(); err != nil {
		if os.Getenv(allowSkipEnv) == "1" {
			fmt.Fprintf(os.Stderr, "e2e: SKIPPING all end-to-end tests: %v (%s=1)\n", err, allowSkipEnv)
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "e2e: cannot run end-to-end tests: %v\n"+
			"e2e: install MariaDB (e.g. apt-get install mariadb-server), or set %s=1 to skip them\n",
			err, allowSkipEnv)
		os.Exit(1)
	}
	goleak.VerifyTestMain(testenv.Wrap(m), testenv.IgnoreIdlePoller)
}
