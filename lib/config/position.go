package config

import (
	"fmt"
	"strings"

	"github.com/BurntSushi/toml"
)

// keyLines records where each key of a TOML document is written, so that validation
// errors can point at a line. BurntSushi/toml v1.6 keeps key positions private, and
// they could not serve anyway: it stores one position per dotted key, so every
// [[cluster]] element's "name" shares the last one's line. We therefore rescan the
// document, which the decoder has already accepted, and track array indexes ourselves.
type keyLines struct {
	// byPath maps an indexed path such as "cluster[1].instances[0]" to its line.
	byPath map[string]int
	// byKey maps a key as toml.Key.String() prints it (no indexes, as in
	// MetaData.Undecoded) to every place it is written.
	byKey map[string][]keyPlace
}

type keyPlace struct {
	path string
	line int
}

// lineOf returns the line of path, or of its nearest written parent, so that a
// problem with a key left at its default points at the table that should hold it.
// It returns 0 when nothing is known, which includes a nil receiver (a Config built
// in code).
func (l *keyLines) lineOf(path string) int {
	if l == nil {
		return 0
	}
	for path != "" {
		if n, ok := l.byPath[path]; ok {
			return n
		}
		path = parentPath(path)
	}
	return 0
}

// placesOf returns where a key reported by MetaData.Undecoded is written.
func (l *keyLines) placesOf(key string) []keyPlace {
	if l == nil {
		return nil
	}
	return l.byKey[key]
}

func parentPath(path string) string {
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i > 0 {
			return path[:i]
		}
	}
	if i := strings.LastIndexByte(path, '.'); i > 0 {
		return path[:i]
	}
	return ""
}

// keyPath is a key both as an indexed path for humans and as plain segments for
// matching MetaData keys.
type keyPath struct {
	text  string
	plain []string
}

func (p keyPath) child(seg string) keyPath {
	plain := make([]string, len(p.plain), len(p.plain)+1)
	copy(plain, p.plain)
	plain = append(plain, seg)
	s := toml.Key{seg}.String() // quotes segments that are not bare keys
	if p.text != "" {
		s = p.text + "." + s
	}
	return keyPath{text: s, plain: plain}
}

func (p keyPath) index(i int) keyPath {
	return keyPath{text: fmt.Sprintf("%s[%d]", p.text, i), plain: p.plain}
}
