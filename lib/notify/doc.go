// Package notify holds the wake-ups the components use to tell a reader
// that some state changed, without ever blocking the writer: Signal (one
// reader, one pending wake-up) and Fanout (any number of subscribers, one
// pending wake-up each). A woken reader reads the latest state itself, so
// wake-ups that arrive while one is pending carry nothing more and are
// dropped.
package notify
