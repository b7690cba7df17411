package main

import (
	"errors"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard/bench/internal/benchconn"
	"github.com/switchyard-db/switchyard/test/mysqldouble"
)

func TestSummaryLine(t *testing.T) {
	var results []sample
	for i := 1; i <= 100; i++ { // first: 1..100 ms, login: a tenth of that
		d := time.Duration(i) * time.Millisecond
		results = append(results, sample{first: d, login: d / 10})
	}
	// Failures count, but do not enter the percentiles.
	results = append(results, sample{err: errors.New("refused")}, sample{err: errors.New("refused")})
	s := summarize(results, 4*time.Second)
	s.late = 3
	want := "conns=100 failed=2 secs=4.00 rate=25.0 late=3 p50_ms=50.000 p95_ms=95.000 p99_ms=99.000" +
		" login_p50_ms=5.000 login_p95_ms=9.500 login_p99_ms=9.900"
	if got := s.String(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := summarize(nil, 0).String(); got != "conns=0 failed=0 secs=0.00 rate=0.0 late=0 p50_ms=0.000 p95_ms=0.000 p99_ms=0.000 login_p50_ms=0.000 login_p95_ms=0.000 login_p99_ms=0.000" {
		t.Errorf("no connections: %s", got)
	}
}

// TestOnce runs the real cycle (login, SELECT 1, COM_QUIT) against the in-process MySQL
// double, and a failing login.
func TestOnce(t *testing.T) {
	d := mysqldouble.Start(t, mysqldouble.Config{NativeUsers: map[string]string{"sb": "sb-pw"}})
	target := benchconn.Target{Addr: d.Addr(), User: "sb", Password: "sb-pw"}
	c, err := target.Connector(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s := once(c, "SELECT 1", 5*time.Second)
	if s.err != nil {
		t.Fatalf("once: %v", s.err)
	}
	if s.login <= 0 || s.first < s.login {
		t.Errorf("login %v, first result %v: want 0 < login <= first", s.login, s.first)
	}
	target.Password = "wrong"
	bad, err := target.Connector(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if s := once(bad, "SELECT 1", 5*time.Second); s.err == nil {
		t.Error("a refused login was not reported")
	}
}
