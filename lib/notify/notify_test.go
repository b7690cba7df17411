package notify

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func pending(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestSignalHoldsOneWakeUp(t *testing.T) {
	s := NewSignal()
	require.False(t, pending(s.C()), "a new signal has nothing pending")
	s.Notify()
	s.Notify()
	s.Notify()
	require.True(t, pending(s.C()), "notifies before a receive wake the reader")
	require.False(t, pending(s.C()), "three notifies wake the reader once")
	s.Notify()
	require.True(t, pending(s.C()), "a notify after the receive wakes it again")
}

func TestSignalCopiesShareTheSlot(t *testing.T) {
	s := NewSignal()
	c := s
	c.Notify()
	require.True(t, pending(s.C()))
}

func TestFanoutWakesEverySubscriberOnce(t *testing.T) {
	var f Fanout // the zero value is usable
	f.Notify()   // nobody to wake
	a, stopA := f.Subscribe()
	b, stopB := f.Subscribe()
	defer stopB()
	require.Equal(t, 2, f.Len())
	require.False(t, pending(a), "subscribing wakes nobody")

	f.Notify()
	f.Notify()
	require.True(t, pending(a))
	require.False(t, pending(a))
	require.True(t, pending(b))

	stopA()
	stopA() // idempotent
	require.Equal(t, 1, f.Len())
	f.Notify()
	require.False(t, pending(a), "an ended subscription is not woken")
	require.True(t, pending(b))
}

// A subscriber that never reads blocks neither Notify nor the others.
func TestFanoutSlowSubscriberNeverBlocks(t *testing.T) {
	var f Fanout
	_, stopSlow := f.Subscribe()
	defer stopSlow()
	fast, stopFast := f.Subscribe()
	defer stopFast()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				f.Notify()
			}
		}()
	}
	wg.Wait()
	require.True(t, pending(fast))
}
