package backend

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRegTable: the poller's table by descriptor keeps each registration
// under its number, grows past its length, and counts what it holds.
func TestRegTable(t *testing.T) {
	var r regTable
	_, ok := r.get(3)
	require.False(t, ok)
	a, b := &idleWatch{}, &idleWatch{}
	r.set(3, pollReg{t: a, gen: 1})
	r.set(5000, pollReg{t: b, gen: 2})
	r.set(3, pollReg{t: a, gen: 4}) // replaced, not counted twice
	require.Equal(t, 2, r.n)
	got, ok := r.get(3)
	require.True(t, ok)
	require.Equal(t, pollReg{t: a, gen: 4}, got)
	got, ok = r.get(5000)
	require.True(t, ok)
	require.Equal(t, pollReg{t: b, gen: 2}, got)
	_, ok = r.get(4)
	require.False(t, ok)
	_, ok = r.get(-1)
	require.False(t, ok)
	r.del(3)
	r.del(3)
	r.del(7000)
	require.Equal(t, 1, r.n)
	_, ok = r.get(3)
	require.False(t, ok)
}
