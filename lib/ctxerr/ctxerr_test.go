package ctxerr

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStable(t *testing.T) {
	other := errors.New("connection reset by peer")
	timeout := fmt.Errorf("read tcp 127.0.0.1:53122->127.0.0.1:4000: %w", os.ErrDeadlineExceeded)

	live := context.Background()
	require.Equal(t, other, Stable(live, other), "another error is kept")
	require.Equal(t, context.DeadlineExceeded, Stable(live, timeout), "a socket timeout loses its ports")

	done, cancel := context.WithCancel(context.Background())
	cancel()
	require.Equal(t, context.Canceled, Stable(done, other), "an ended context wins")
}
