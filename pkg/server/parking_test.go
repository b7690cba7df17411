package server

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestIdleParkAfter: "0s" in the file turns parking off (a negative value
// for the sessions, whose own 0 means their default); other values pass on.
func TestIdleParkAfter(t *testing.T) {
	require.Negative(t, idleParkAfter(0), "0s: sessions never park")
	require.Equal(t, time.Second, idleParkAfter(time.Second))
	require.Equal(t, 250*time.Millisecond, idleParkAfter(250*time.Millisecond))
}
