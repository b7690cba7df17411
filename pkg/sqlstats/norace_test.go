//go:build !race

package sqlstats

const raceEnabled = false
