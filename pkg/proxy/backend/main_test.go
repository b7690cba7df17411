package backend

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard/pkg/proxy/evloop"
	"github.com/switchyard-db/switchyard/test/testenv"
	"go.uber.org/goleak"
)

// testLoops, when SWITCHYARD_TEST_EVENT_LOOPS=N, serves every test's
// sessions on N event loops (onloop.go): the whole package runs both ways.
// With fewer loops than Ps the loops block in epoll_wait, else they park in
// the netpoller (evloop's setWait), so make unit runs N=1 and N=2.
var testLoops *evloop.Group

func TestMain(m *testing.M) {
	// Every test that idles a session past a few round trips parks it, so
	// that each wake path is exercised on parked sessions too.
	parkAfter = 30 * time.Millisecond
	if n, _ := strconv.Atoi(os.Getenv("SWITCHYARD_TEST_EVENT_LOOPS")); n > 0 {
		g, err := evloop.NewGroup(n)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		testLoops = g
	}
	code := m.Run()
	if testLoops != nil {
		testLoops.Close()
	}
	// The idle poller's goroutine lives as long as the process.
	if code == 0 {
		if err := goleak.Find(testenv.IgnoreIdlePoller); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
