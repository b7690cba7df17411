package config

import (
	"encoding"
	"fmt"
	"strings"
	"time"
)

// Duration is a time.Duration written in TOML as a Go duration string such as "15s"
// or "1m30s". A bare number is rejected rather than read as nanoseconds, because
// `connect-timeout = 5` meaning 5ns is never what anyone wants.
type Duration struct {
	time.Duration
}

var (
	_ encoding.TextMarshaler   = Duration{}
	_ encoding.TextUnmarshaler = (*Duration)(nil)
)

// NewDuration wraps d.
func NewDuration(d time.Duration) Duration {
	return Duration{Duration: d}
}

// MarshalText writes the duration in the form UnmarshalText reads, so an encoded
// Config decodes to the same value.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.Duration.String()), nil
}

// UnmarshalText parses a duration string such as "15s".
func (d *Duration) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: want a number with a unit, such as \"15s\" or \"1m30s\"", s)
	}
	d.Duration = v
	return nil
}
