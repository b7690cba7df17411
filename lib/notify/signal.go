package notify

// Signal is a one-slot wake-up for one reader. Notify never blocks; any
// number of Notify calls before the reader receives wake it once. The zero
// value is not usable: build one with NewSignal.
type Signal struct{ ch chan struct{} }

// NewSignal returns a Signal with no wake-up pending.
func NewSignal() Signal { return Signal{ch: make(chan struct{}, 1)} }

// Notify leaves a wake-up pending, unless one already is.
func (s Signal) Notify() {
	select {
	case s.ch <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// C receives once per pending wake-up.
func (s Signal) C() <-chan struct{} { return s.ch }
