//go:build !race

package mysql

// raceEnabled: this test binary runs under the race detector. See
// smallPayloadsOnly.
const raceEnabled = false
