package traffic

import (
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

func TestCaptureWritesRecordsUntilCancelled(t *testing.T) {
	dir := t.TempDir()
	c, err := Start(zaptest.NewLogger(t), dir, Options{Cluster: "east", Duration: time.Hour})
	require.NoError(t, err)
	require.Equal(t, StateRunning, c.Status().State)
	for i := 0; i < 100; i++ {
		c.Add(&Record{OffsetUs: int64(i), ConnID: 1, Cmd: 3, Command: "query", Text: "SELECT 1", Payload: []byte{0, 1, 0xff}})
	}
	require.Eventually(t, func() bool { return c.Status().Captured == 100 }, 10*time.Second, time.Millisecond)
	c.Stop("cancelled")
	st := c.Status()
	require.Equal(t, StateCancelled, st.State)
	require.Equal(t, "cancelled", st.Reason)
	require.False(t, st.End.IsZero())
	c.Add(&Record{}) // after the end: ignored
	h, recs, err := ReadFile(st.File)
	require.NoError(t, err)
	require.Equal(t, "east", h.Cluster)
	require.Len(t, recs, 100)
	require.Equal(t, []byte{0, 1, 0xff}, recs[99].Payload)
	require.Equal(t, int64(99), recs[99].OffsetUs)
	info, err := os.Stat(st.File)
	require.NoError(t, err)
	require.Equal(t, info.Size(), st.Bytes)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
}

func TestCaptureEndsAtDurationAndSize(t *testing.T) {
	c, err := Start(zaptest.NewLogger(t), t.TempDir(), Options{Cluster: "east", Duration: 200 * time.Millisecond})
	require.NoError(t, err)
	select {
	case <-c.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the capture outlived its duration")
	}
	require.Equal(t, StateDone, c.Status().State)
	require.Equal(t, "duration reached", c.Status().Reason)

	c, err = Start(zaptest.NewLogger(t), t.TempDir(), Options{Cluster: "east", Duration: time.Hour, MaxBytes: 4096})
	require.NoError(t, err)
	// Incompressible text, so that the file grows.
	text := make([]byte, 512)
	for i := 0; i < 10_000; i++ {
		for j := range text {
			text[j] = byte('a' + (i*7+j*13)%26)
		}
		c.Add(&Record{Text: string(text)})
		if i%100 == 0 {
			select {
			case <-c.Done():
				i = 10_000
			default:
				time.Sleep(time.Millisecond)
			}
		}
	}
	<-c.Done()
	st := c.Status()
	require.Equal(t, "size limit reached", st.Reason)
	require.GreaterOrEqual(t, st.Bytes, int64(4096))
	require.Less(t, st.Bytes, int64(200<<10))
	_, recs, err := ReadFile(st.File)
	require.NoError(t, err)
	require.Equal(t, int(st.Captured), len(recs))
}

// TestCaptureDropsWhenBehind: Add never waits; what the queue cannot hold is
// counted, and captured plus dropped is everything added.
func TestCaptureDropsWhenBehind(t *testing.T) {
	c, err := Start(zaptest.NewLogger(t), t.TempDir(), Options{Cluster: "east", Duration: time.Hour, Buffer: 1})
	require.NoError(t, err)
	const workers, each = 4, 5000
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				c.Add(&Record{Text: "SELECT 1"})
			}
		}()
	}
	wg.Wait()
	c.Stop("cancelled")
	st := c.Status()
	require.Equal(t, uint64(workers*each), st.Captured+st.Dropped)
	require.Positive(t, st.Dropped, "a one-record queue cannot keep up with four writers")
	_, recs, err := ReadFile(st.File)
	require.NoError(t, err)
	require.Equal(t, int(st.Captured), len(recs))
}

func TestCaptureRefusesBadOptions(t *testing.T) {
	_, err := Start(zaptest.NewLogger(t), t.TempDir(), Options{Cluster: "east"})
	require.ErrorContains(t, err, "duration 0s: must be positive")
	_, err = Start(zaptest.NewLogger(t), "/nonexistent-dir", Options{Cluster: "east", Duration: time.Second})
	require.ErrorContains(t, err, "creating the capture file")
}
