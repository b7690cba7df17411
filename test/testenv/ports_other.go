//go:build !unix

package testenv

import (
	"os"
	"path/filepath"
	"strconv"
)

// lockPort without flock: the port is only kept apart within this process.
func lockPort(dir string, port int) (*os.File, bool, error) {
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
	return f, err == nil, err
}
