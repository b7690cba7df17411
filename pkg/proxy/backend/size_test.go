package backend

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// TestSessionSize: every idle session holds a Session, so its size is
// memory per idle session (docs/benchmarks.md, "Parked sessions"). 640
// bytes is a Go allocation class: a few bytes more cost 64.
func TestSessionSize(t *testing.T) {
	require.LessOrEqual(t, unsafe.Sizeof(Session{}), uintptr(640))
}
