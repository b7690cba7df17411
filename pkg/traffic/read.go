package traffic

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
)

// ReadFile reads a capture file whole.
func ReadFile(path string) (Header, []Record, error) {
	var h Header
	f, err := os.Open(path)
	if err != nil {
		return h, nil, err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return h, nil, fmt.Errorf("%s: %w", path, err)
	}
	defer gz.Close()
	sc := bufio.NewScanner(gz)
	sc.Buffer(nil, 64<<20)
	if !sc.Scan() {
		return h, nil, fmt.Errorf("%s: no header line: %v", path, sc.Err())
	}
	if err := json.Unmarshal(sc.Bytes(), &h); err != nil {
		return h, nil, fmt.Errorf("%s: header: %w", path, err)
	}
	if h.Version != FormatVersion {
		return h, nil, fmt.Errorf("%s: format version %d, want %d", path, h.Version, FormatVersion)
	}
	var out []Record
	for line := 2; sc.Scan(); line++ {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return h, out, fmt.Errorf("%s: line %d: %w", path, line, err)
		}
		out = append(out, r)
	}
	return h, out, sc.Err()
}
