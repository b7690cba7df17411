package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
)

var (
	durationType   = reflect.TypeOf(Duration{})
	eventLoopsType = reflect.TypeOf(EventLoops{})
)

// typeProblems compares a document decoded into plain maps with the schema, before
// it is decoded into a Config. The decoder would stop at the first mismatch, name Go
// types ("map[string]any", "slice") and, inside [[cluster]], give the line of the
// last element rather than the offending one; this reports every mismatch in TOML
// terms at its own line. Keys the schema lacks are left to MetaData.Undecoded.
//
// Each mismatched value is removed from raw (a bad array element takes its whole
// array with it), so that what is left can still be decoded and validated and the
// file's other problems reported too. The errors carry the key they are about.
func typeProblems(raw map[string]any, lines *keyLines) []*problem {
	tc := &typeChecker{lines: lines}
	tc.table(reflect.TypeOf(Config{}), raw, keyPath{})
	for _, prune := range tc.prunes {
		prune()
	}
	sort.SliceStable(tc.errs, func(i, j int) bool { return tc.errs[i].line < tc.errs[j].line })
	return tc.errs
}

type typeChecker struct {
	lines *keyLines
	errs  []*problem
	// prunes remove the mismatched values, run once the walk is over.
	prunes []func()
}

// addf records a mismatch at p; drop removes the value from the document.
func (tc *typeChecker) addf(p keyPath, drop func(), format string, args ...any) {
	tc.errs = append(tc.errs, &problem{
		line: tc.lines.lineOf(p.text),
		msg:  p.text + ": " + fmt.Sprintf(format, args...),
		key:  p.text,
	})
	tc.prunes = append(tc.prunes, drop)
}

func (tc *typeChecker) table(t reflect.Type, m map[string]any, p keyPath) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if f, ok := fieldFor(t, k); ok {
			tc.value(f.Type, m[k], p.child(k), func() { delete(m, k) })
		}
	}
}

func (tc *typeChecker) value(t reflect.Type, v any, p keyPath, drop func()) {
	if t == durationType {
		s, ok := v.(string)
		if !ok {
			tc.addf(p, drop, `must be a duration string such as "15s", not %s`, tomlTypeName(v))
			return
		}
		var d Duration
		if err := d.UnmarshalText([]byte(s)); err != nil {
			tc.addf(p, drop, "%v", err)
		}
		return
	}
	if t == eventLoopsType {
		switch x := v.(type) {
		case int64: // its range is Check's
		case string:
			if x != "auto" {
				tc.addf(p, drop, `must be "auto" or a number of loops, not %q`, x)
			}
		default:
			tc.addf(p, drop, `must be "auto" or a number of loops, not %s`, tomlTypeName(v))
		}
		return
	}
	switch t.Kind() {
	case reflect.String:
		if _, ok := v.(string); !ok {
			tc.addf(p, drop, "must be a string, not %s", tomlTypeName(v))
		}
	case reflect.Int:
		if _, ok := v.(int64); !ok {
			tc.addf(p, drop, "must be an integer, not %s", tomlTypeName(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			tc.addf(p, drop, "must be true or false, not %s", tomlTypeName(v))
		}
	case reflect.Map: // labels: a table of strings
		m, ok := v.(map[string]any)
		if !ok {
			tc.addf(p, drop, "must be a table, not %s", tomlTypeName(v))
			return
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			tc.value(t.Elem(), m[k], p.child(k), func() { delete(m, k) })
		}
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			tc.addf(p, drop, "must be a table, not %s", tomlTypeName(v))
			return
		}
		tc.table(t, m, p)
	case reflect.Slice:
		tc.slice(t, v, p, drop)
	}
}

// slice checks each element. A bad element drops the whole array (drop):
// removing one element would renumber the others.
func (tc *typeChecker) slice(t reflect.Type, v any, p keyPath, drop func()) {
	var elems []any
	switch a := v.(type) {
	case []any:
		elems = a
	case []map[string]any: // an array of tables
		for _, m := range a {
			elems = append(elems, m)
		}
	default:
		if t.Elem().Kind() == reflect.Struct {
			tc.addf(p, drop, "must be an array of tables, written [[%s]], not %s", p.text, tomlTypeName(v))
		} else {
			tc.addf(p, drop, "must be an array, not %s", tomlTypeName(v))
		}
		return
	}
	for i, e := range elems {
		tc.value(t.Elem(), e, p.index(i), drop)
	}
}

// fieldFor finds the field for a TOML key the way BurntSushi/toml does: the exact
// tag first, then a case-insensitive match.
func fieldFor(t reflect.Type, key string) (reflect.StructField, bool) {
	var folded reflect.StructField
	found := false
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" {
			name = f.Name
		}
		if name == key {
			return f, true
		}
		if !found && strings.EqualFold(name, key) {
			folded, found = f, true
		}
	}
	return folded, found
}

func tomlTypeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case map[string]any:
		return "a table"
	case []any, []map[string]any:
		return "an array"
	}
	return "a date-time"
}
