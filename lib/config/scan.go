package config

import (
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// scanKeyLines is lenient: it only runs on documents the decoder accepted, and when
// it meets something it does not understand it stops and returns what it has, since
// line numbers are a help, not a requirement.
func scanKeyLines(src string) *keyLines {
	s := &lineScanner{
		src:    src,
		arrays: make(map[string]int),
		out:    &keyLines{byPath: make(map[string]int), byKey: make(map[string][]keyPlace)},
	}
	for i := 0; i < len(src); i++ {
		if src[i] == '\n' {
			s.newlines = append(s.newlines, i)
		}
	}
	if strings.HasPrefix(src, "\ufeff") {
		s.pos = len("\ufeff")
	}
	s.document()
	return s.out
}

type lineScanner struct {
	src      string
	pos      int
	newlines []int
	// arrays counts the elements of each array of tables seen so far, by indexed
	// path, so "[[cluster]]" can be numbered and "[cluster.x]" resolved to the
	// latest element.
	arrays map[string]int
	out    *keyLines
}

func (s *lineScanner) lineAt(off int) int {
	return sort.SearchInts(s.newlines, off) + 1
}

// record notes where p is written. Keys are also indexed by their plain form so
// Undecoded keys can be found; array elements are not, being no key of their own.
func (s *lineScanner) record(p keyPath, off int, isKey bool) {
	line := s.lineAt(off)
	if _, ok := s.out.byPath[p.text]; !ok {
		s.out.byPath[p.text] = line
	}
	if isKey {
		k := toml.Key(p.plain).String()
		s.out.byKey[k] = append(s.out.byKey[k], keyPlace{path: p.text, line: line})
	}
}

func (s *lineScanner) document() {
	var table keyPath
	for {
		s.skipBlank()
		if s.pos >= len(s.src) {
			return
		}
		start := s.pos
		if s.src[s.pos] == '[' {
			array := strings.HasPrefix(s.src[s.pos:], "[[")
			closing := "]"
			s.pos++
			if array {
				s.pos++
				closing = "]]"
			}
			segs, ok := s.key()
			if !ok || !strings.HasPrefix(s.src[s.pos:], closing) {
				return
			}
			s.pos += len(closing)
			table = s.resolveTable(segs, array)
			s.record(table, start, true)
		} else if !s.keyValue(table, start) {
			return
		}
		s.skipLine()
	}
}

// resolveTable turns a table header into an indexed path: [[a]] starts a new
// element of a, and any earlier segment naming an array of tables refers to its
// latest element, as TOML specifies.
func (s *lineScanner) resolveTable(segs []string, array bool) keyPath {
	var p keyPath
	for i, seg := range segs {
		p = p.child(seg)
		n, isArray := s.arrays[p.text]
		if array && i == len(segs)-1 {
			s.arrays[p.text] = n + 1
			return p.index(n)
		}
		if isArray && n > 0 {
			p = p.index(n - 1)
		}
	}
	return p
}

// keyValue reads `dotted.key = value` below parent and records every key in it.
func (s *lineScanner) keyValue(parent keyPath, start int) bool {
	segs, ok := s.key()
	if !ok || s.pos >= len(s.src) || s.src[s.pos] != '=' {
		return false
	}
	s.pos++
	s.skipSpace()
	p := parent
	for _, seg := range segs {
		p = p.child(seg)
		s.record(p, start, true)
	}
	return s.value(p)
}

// key reads a dotted key and leaves the scanner after trailing spaces.
func (s *lineScanner) key() ([]string, bool) {
	var segs []string
	for {
		s.skipSpace()
		seg, ok := s.keySegment()
		if !ok {
			return nil, false
		}
		segs = append(segs, seg)
		s.skipSpace()
		if s.pos >= len(s.src) || s.src[s.pos] != '.' {
			return segs, true
		}
		s.pos++
	}
}

func (s *lineScanner) keySegment() (string, bool) {
	if s.pos >= len(s.src) {
		return "", false
	}
	switch s.src[s.pos] {
	case '"':
		start := s.pos
		if !s.basicString() {
			return "", false
		}
		raw := s.src[start:s.pos]
		if v, err := strconv.Unquote(raw); err == nil {
			return v, true
		}
		return raw[1 : len(raw)-1], true
	case '\'':
		start := s.pos + 1
		if !s.literalString() {
			return "", false
		}
		return s.src[start : s.pos-1], true
	}
	start := s.pos
	for s.pos < len(s.src) && !strings.ContainsRune(" \t\r\n.=[]\"'#,{}", rune(s.src[s.pos])) {
		s.pos++
	}
	return s.src[start:s.pos], s.pos > start
}

// value skips one value, recording the keys of inline tables and the positions of
// array elements below p.
func (s *lineScanner) value(p keyPath) bool {
	if s.pos >= len(s.src) {
		return false
	}
	rest := s.src[s.pos:]
	switch {
	case strings.HasPrefix(rest, `"""`):
		return s.multiline(`"""`, true)
	case strings.HasPrefix(rest, `'''`):
		return s.multiline(`'''`, false)
	case rest[0] == '"':
		return s.basicString()
	case rest[0] == '\'':
		return s.literalString()
	case rest[0] == '[':
		return s.array(p)
	case rest[0] == '{':
		return s.inlineTable(p)
	}
	return s.scalar()
}

func (s *lineScanner) array(p keyPath) bool {
	s.pos++ // [
	for i := 0; ; i++ {
		s.skipBlank()
		if s.pos >= len(s.src) {
			return false
		}
		if s.src[s.pos] == ']' {
			s.pos++
			return true
		}
		elem := p.index(i)
		s.record(elem, s.pos, false)
		if !s.value(elem) {
			return false
		}
		s.skipBlank()
		if s.pos < len(s.src) && s.src[s.pos] == ',' {
			s.pos++
		}
	}
}

// inlineTable accepts newlines inside braces, which TOML 1.1 allows.
func (s *lineScanner) inlineTable(p keyPath) bool {
	s.pos++ // {
	for {
		s.skipBlank()
		if s.pos >= len(s.src) {
			return false
		}
		if s.src[s.pos] == '}' {
			s.pos++
			return true
		}
		if !s.keyValue(p, s.pos) {
			return false
		}
		s.skipBlank()
		if s.pos < len(s.src) && s.src[s.pos] == ',' {
			s.pos++
		}
	}
}

func (s *lineScanner) basicString() bool {
	s.pos++ // "
	for s.pos < len(s.src) {
		switch s.src[s.pos] {
		case '\\':
			s.pos += 2
		case '"':
			s.pos++
			return true
		case '\n':
			return false
		default:
			s.pos++
		}
	}
	return false
}

func (s *lineScanner) literalString() bool {
	s.pos++ // '
	end := strings.IndexAny(s.src[s.pos:], "'\n")
	if end < 0 || s.src[s.pos+end] != '\'' {
		return false
	}
	s.pos += end + 1
	return true
}

func (s *lineScanner) multiline(delim string, escapes bool) bool {
	s.pos += len(delim)
	for s.pos < len(s.src) {
		if escapes && s.src[s.pos] == '\\' {
			s.pos += 2
			continue
		}
		if strings.HasPrefix(s.src[s.pos:], delim) {
			s.pos += len(delim)
			// Up to two quotes right before the closing delimiter belong to the
			// string, so the delimiter is the last three of the run.
			for i := 0; i < 2 && s.pos < len(s.src) && s.src[s.pos] == delim[0]; i++ {
				s.pos++
			}
			return true
		}
		s.pos++
	}
	return false
}

// scalar skips a number, boolean or date-time. A date-time may have a space
// between date and time, so a date followed by a space and a digit continues.
func (s *lineScanner) scalar() bool {
	start := s.pos
	s.skipScalarRun()
	if s.pos-start == len("2006-01-02") && s.src[start+4] == '-' &&
		s.pos+1 < len(s.src) && s.src[s.pos] == ' ' && isDigit(s.src[s.pos+1]) {
		s.pos++
		s.skipScalarRun()
	}
	return s.pos > start
}

func (s *lineScanner) skipScalarRun() {
	for s.pos < len(s.src) && !strings.ContainsRune(" \t\r\n,]}#", rune(s.src[s.pos])) {
		s.pos++
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// skipSpace skips spaces and tabs on the current line.
func (s *lineScanner) skipSpace() {
	for s.pos < len(s.src) && (s.src[s.pos] == ' ' || s.src[s.pos] == '\t') {
		s.pos++
	}
}

// skipBlank skips whitespace, newlines and comments.
func (s *lineScanner) skipBlank() {
	for s.pos < len(s.src) {
		switch s.src[s.pos] {
		case ' ', '\t', '\r', '\n':
			s.pos++
		case '#':
			s.skipLine()
		default:
			return
		}
	}
}

// skipLine moves past the end of the current line; after a value only a comment
// can follow.
func (s *lineScanner) skipLine() {
	if s.pos >= len(s.src) {
		s.pos = len(s.src)
		return
	}
	if i := strings.IndexByte(s.src[s.pos:], '\n'); i >= 0 {
		s.pos += i + 1
		return
	}
	s.pos = len(s.src)
}
