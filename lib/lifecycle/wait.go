package lifecycle

import (
	"sync"
	"time"
)

// WaitTimeout waits for wg for at most d; false when it timed out. The
// goroutine that waits stays until wg is done: use it only where the work
// is known to end (a term's work after its context ended, Campaign calls
// after the client closes).
func WaitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}
