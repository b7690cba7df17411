package backend

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	pmysql "github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/test/mysqldouble"
)

// SessionByID makes the test proxy a SessionLookup, as proxy.Server is.
func (p *testProxy) SessionByID(id uint64) *Session {
	p.mu.Lock()
	defer p.mu.Unlock()
	for s := range p.sessions {
		if s.ID() == id {
			return s
		}
	}
	return nil
}

// TestKillAcrossBackends: a KILL naming a session on another backend is
// never run there under another identity. KILL QUERY gets an ERR that says
// why; KILL CONNECTION of the same user's session closes it (what the server
// allows anyone for their own connections). Ids the proxy never gave out
// get "Unknown thread id". (Same-backend KILL runs on the backend: e2e
// TestKillQueryThroughProxy, against MariaDB.)
func TestKillAcrossBackends(t *testing.T) {
	one, two, _, a, b := twoSessionsOnTwoBackends(t)
	require.Equal(t, int64(1), one.Stats().Connections, "the router spreads the two sessions")
	require.Equal(t, int64(1), two.Stats().Connections)

	kill := func(c *rawClient, q string) []byte {
		c.pio.ResetSequence()
		c.write(append([]byte{pmysql.ComQuery}, q...))
		return c.read()
	}
	e := pmysql.ParseErr(kill(b, fmt.Sprintf("KILL QUERY %d", a.greeting.ConnID)))
	require.Equal(t, pmysql.ErUnknown, e.Code, e.Message)
	require.Contains(t, e.Message, "that session is on backend")

	e = pmysql.ParseErr(kill(b, "KILL 99"))
	require.Equal(t, pmysql.ErNoSuchThread, e.Code)
	require.Equal(t, "Unknown thread id: 99", e.Message)

	e = pmysql.ParseErr(kill(b, "KILL -- no id\n"))
	require.Equal(t, pmysql.ErUnknown, e.Code, "a KILL that cannot be translated is not forwarded")

	// Forms that name no connection id go to the backend as they are (the
	// double answers any statement it does not know with OK).
	before := one.Stats().Connections + two.Stats().Connections
	require.Equal(t, pmysql.OKHeader, kill(b, "KILL USER nobody")[0])
	require.Equal(t, pmysql.OKHeader, kill(b, "kill hard query id 12")[0])
	require.Equal(t, before, one.Stats().Connections+two.Stats().Connections)

	b.pio.ResetSequence()
	b.write(append([]byte{pmysql.ComStmtPrepare}, "KILL ?"...))
	require.Equal(t, pmysql.ErUnknown, pmysql.ParseErr(b.read()).Code, "a KILL cannot be prepared")

	require.Equal(t, pmysql.OKHeader, kill(b, fmt.Sprintf("kill connection %d;", a.greeting.ConnID))[0])
	a.requireClosed()

	// The issuing session goes on.
	b.pio.ResetSequence()
	b.write([]byte{pmysql.ComPing})
	require.Equal(t, pmysql.OKHeader, b.read()[0])
}

// twoSessionsOnTwoBackends starts two doubles behind a proxy whose sessions
// can find each other (KILL), and logs the same user in twice: the router
// spreads a and b over the two backends.
func twoSessionsOnTwoBackends(t *testing.T) (one, two *mysqldouble.Server, p *testProxy, a, b *rawClient) {
	t.Helper()
	one = mysqldouble.Start(t, mysqldouble.Config{NativeUsers: nativeUsers})
	two = mysqldouble.Start(t, mysqldouble.Config{NativeUsers: nativeUsers})
	cfg := baseConfig()
	p = newTestProxy(t, cfg, one.Addr(), two.Addr())
	cfg.Sessions = p // before any session can read it
	p.start(t)
	a = dialRaw(t, p.Addr())
	rawNativeLogin(t, a, "nate", "n4tive")
	b = dialRaw(t, p.Addr())
	rawNativeLogin(t, b, "nate", "n4tive")
	return one, two, p, a, b
}
