package proxy

import (
	"context"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	pmysql "github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/proxy/backend"
	"github.com/switchyard-db/switchyard/pkg/router/routertest"
)

// Drain takes only the sessions that match when it begins: an idle one ends
// at once, one inside a transaction lives until the deadline and is then
// told why in an ERR packet; a session that starts afterwards is not
// touched, and Done closes when the last drained session has ended.
func TestDrainEndsMatchingSessionsAndTellsTheLateOnesWhy(t *testing.T) {
	d := backendDouble(t)
	s := startServer(t, Options{}, routertest.NewForAddrs("c", []string{d.Addr()}))
	ctx := context.Background()
	db := openDB(t, s.Addr().String(), "app")
	idle, err := db.Conn(ctx)
	require.NoError(t, err)
	defer idle.Close()
	inTxn, err := db.Conn(ctx)
	require.NoError(t, err)
	defer inTxn.Close()
	require.NoError(t, idle.PingContext(ctx))
	_, err = inTxn.ExecContext(ctx, "BEGIN")
	require.NoError(t, err)
	routed := func() (n int) {
		s.RangeRouted(func(*backend.Session) { n++ })
		return n
	}
	require.Eventually(t, func() bool { return routed() == 2 }, 5*time.Second, 10*time.Millisecond)

	e := &pmysql.MySQLError{Code: pmysql.ErServerShutdown, State: "08S01", Message: "Switchyard: drained for the test"}
	dr := s.Drain(func(ss *backend.Session) bool { return ss.Info().Cluster == "c" }, 2*time.Second, e)
	require.Equal(t, 2, dr.Sessions())

	later, err := db.Conn(ctx)
	require.NoError(t, err)
	defer later.Close()
	require.NoError(t, later.PingContext(ctx), "a session that started after the drain began is not drained")

	require.Eventually(t, func() bool { return s.SessionCount() == 2 }, 5*time.Second, 10*time.Millisecond,
		"the idle session ends at once")
	select {
	case <-dr.Done():
		t.Fatal("the drain ended while a session inside a transaction was still open")
	case <-dr.Expired():
		t.Fatal("the deadline passed too early")
	default:
	}
	select {
	case <-dr.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the drain never ended")
	}
	require.Equal(t, 1, dr.Forced(), "the session inside a transaction was still open at the deadline")
	_, err = inTxn.ExecContext(ctx, "SELECT 1")
	var me *mysql.MySQLError
	require.ErrorAs(t, err, &me)
	require.Equal(t, "Switchyard: drained for the test", me.Message)
	require.NoError(t, later.PingContext(ctx), "the later session lives on")
	// The drained session writes its ERR and then ends: the client can read
	// the ERR before the session's end is counted.
	require.Eventually(t, func() bool { return s.SessionCount() == 1 }, 5*time.Second, 10*time.Millisecond,
		"the drained session ends, the later one lives on")
}

// A drain with nothing to take is over at once; Expire on a drain without a
// deadline closes the sessions at once (shutdown when its context ends), and
// is idempotent.
func TestDrainExpireAndEmpty(t *testing.T) {
	d := backendDouble(t)
	s := startServer(t, Options{}, routertest.NewForAddrs("c", []string{d.Addr()}))
	empty := s.Drain(func(*backend.Session) bool { return false }, time.Second, nil)
	select {
	case <-empty.Done():
	default:
		t.Fatal("an empty drain is over at once")
	}

	ctx := context.Background()
	conn, err := openDB(t, s.Addr().String(), "app").Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.ExecContext(ctx, "BEGIN")
	require.NoError(t, err)
	dr := s.Drain(func(*backend.Session) bool { return true }, 0, nil)
	time.Sleep(200 * time.Millisecond)
	require.Equal(t, 1, s.SessionCount(), "without a deadline a session inside a transaction is never forced")
	dr.Expire()
	dr.Expire()
	<-dr.Expired()
	select {
	case <-dr.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the expired drain never ended")
	}
	require.Equal(t, 1, dr.Forced())
	require.Error(t, conn.PingContext(ctx))
}
