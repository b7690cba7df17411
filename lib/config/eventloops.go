package config

import (
	"fmt"
	"strconv"
)

// EventLoops is proxy.event-loops: "auto" (the default) or a number of
// event loops, 0 for a goroutine per session.
type EventLoops struct {
	// Auto picks the number from the Ps the process has (Count).
	Auto bool
	// N is the number written, when not Auto.
	N int
}

// AutoEventLoops is the default, "auto".
var AutoEventLoops = EventLoops{Auto: true}

// EventLoopsN is n loops.
func EventLoopsN(n int) EventLoops { return EventLoops{N: n} }

// Count is how many loops to run in a process with procs Ps (GOMAXPROCS).
// "auto" leaves one P beyond the loops' for the logins, health probes, API
// and garbage collector, so that each loop blocks in epoll_wait between its
// events: one loop on two CPUs was the cheapest setting measured
// (docs/benchmarks.md). With one P there is one loop.
func (e EventLoops) Count(procs int) int {
	if e.Auto {
		return max(1, procs-1)
	}
	return e.N
}

func (e EventLoops) String() string {
	if e.Auto {
		return "auto"
	}
	return strconv.Itoa(e.N)
}

// MarshalTOML writes "auto" or the number.
func (e EventLoops) MarshalTOML() ([]byte, error) {
	if e.Auto {
		return []byte(`"auto"`), nil
	}
	return []byte(strconv.Itoa(e.N)), nil
}

// UnmarshalTOML reads "auto" or an integer (typecheck.go has checked which).
func (e *EventLoops) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		*e = EventLoops{N: int(x)}
		return nil
	case string:
		if x == "auto" {
			*e = AutoEventLoops
			return nil
		}
	}
	return fmt.Errorf(`must be "auto" or a number of loops, not %v`, v)
}
