package config

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestProxyTimeoutKeys(t *testing.T) {
	base := "[proxy]\naddr = \"127.0.0.1:6000\"\n%s\n[[cluster]]\nname = \"main\"\ninstances = [\"127.0.0.1:3306\"]\n"
	parse := func(extra string) (*Config, error) {
		return Parse([]byte(fmt.Sprintf(base, extra)))
	}

	c, err := parse("")
	require.NoError(t, err)
	require.Equal(t, 30*time.Second, c.Proxy.HandshakeTimeout.Duration, "handshake-timeout default")
	require.Zero(t, c.Proxy.BackendReadTimeout.Duration, "backend-read-timeout default: no limit")

	c, err = parse("handshake-timeout = \"3s\"\nbackend-read-timeout = \"1m\"")
	require.NoError(t, err)
	require.Equal(t, 3*time.Second, c.Proxy.HandshakeTimeout.Duration)
	require.Equal(t, time.Minute, c.Proxy.BackendReadTimeout.Duration)

	_, err = parse("handshake-timeout = \"0s\"")
	require.ErrorContains(t, err, `proxy.handshake-timeout "0s": must be positive`)
	_, err = parse("handshake-timeout = \"-1s\"")
	require.ErrorContains(t, err, `proxy.handshake-timeout "-1s": must be positive`)
	_, err = parse("backend-read-timeout = \"-5s\"")
	require.ErrorContains(t, err, `proxy.backend-read-timeout "-5s": must not be negative`)

	require.Equal(t, time.Second, c.Proxy.IdleParkAfter.Duration, "idle-park-after default")
	for in, want := range map[string]time.Duration{"0s": 0, "250ms": 250 * time.Millisecond, "1m": time.Minute} {
		c, err = parse("idle-park-after = \"" + in + "\"")
		require.NoError(t, err, in)
		require.Equal(t, want, c.Proxy.IdleParkAfter.Duration, in)
	}
	_, err = parse("idle-park-after = \"-1s\"")
	require.ErrorContains(t, err, `proxy.idle-park-after "-1s": must not be negative`)

	require.Equal(t, AutoEventLoops, c.Proxy.EventLoops, "event-loops default: auto")
	require.Equal(t, 1, c.Proxy.EventLoops.Count(1), "auto, one P")
	require.Equal(t, 1, c.Proxy.EventLoops.Count(2), "auto, two Ps: one left to the rest")
	require.Equal(t, 7, c.Proxy.EventLoops.Count(8))
	for in, want := range map[string]EventLoops{"2": EventLoopsN(2), "0": EventLoopsN(0), `"auto"`: AutoEventLoops} {
		c, err = parse("event-loops = " + in)
		require.NoError(t, err, in)
		require.Equal(t, want, c.Proxy.EventLoops, in)
	}
	require.Equal(t, 0, EventLoopsN(0).Count(8), "0: a goroutine per session")
	for _, bad := range []string{"-1", "257"} {
		_, err = parse("event-loops = " + bad)
		require.ErrorContains(t, err, "proxy.event-loops "+bad+`: must be "auto", or 0 (a goroutine per session) to 256`)
	}
	_, err = parse(`event-loops = "many"`)
	require.ErrorContains(t, err, `proxy.event-loops: must be "auto" or a number of loops, not "many"`)
	_, err = parse(`event-loops = 1.5`)
	require.ErrorContains(t, err, `proxy.event-loops: must be "auto" or a number of loops, not a float`)
}
