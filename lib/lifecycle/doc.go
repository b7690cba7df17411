// Package lifecycle holds the Start/Close discipline the components share
// (DESIGN.md: New builds without I/O, Start(ctx) launches the goroutines,
// Close is idempotent and waits for them): Loop runs one owned goroutine,
// and WaitTimeout bounds a wait for a WaitGroup.
package lifecycle
