package config

import (
	"reflect"
	"strings"

	libconfig "github.com/switchyard-db/switchyard/lib/config"
)

// live lists the settings a reload applies to the running process; every
// other setting only takes effect after a restart. Clusters, routes, health
// checks and balance are applied by the server; drain-timeout is read when a
// cluster is removed.
var live = map[string]bool{
	"proxy.default-cluster":     true,
	"proxy.user-prefix-routing": true,
	"proxy.labels":              true,
	"health-check":              true,
	"balance":                   true,
	"digests":                   true,
	"query-log":                 true,
	"traffic":                   true,
	"cluster":                   true,
	"route":                     true,
	"shadow":                    true,
}

// NeedsRestart names the settings whose value in next differs from running
// but cannot change without a restart, as TOML keys ("proxy.addr",
// "security.server-tls.cert"). prev nil means nothing is running yet.
func NeedsRestart(running, next *libconfig.Config) []string {
	if running == nil || next == nil {
		return nil
	}
	var out []string
	diffKeys(reflect.ValueOf(*running), reflect.ValueOf(*next), "", &out)
	return out
}

func diffKeys(a, b reflect.Value, path string, out *[]string) {
	if live[path] {
		return
	}
	if a.Kind() != reflect.Struct || a.Type() == durationType {
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			*out = append(*out, path)
		}
		return
	}
	eachSetting(a.Type(), path, func(i int, key string) {
		diffKeys(a.Field(i), b.Field(i), key, out)
	})
}

// eachSetting calls fn with the index and dotted key of each TOML field of
// the struct type t, whose own key is path.
func eachSetting(t reflect.Type, path string, fn func(i int, key string)) {
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		key := name
		if path != "" {
			key = path + "." + name
		}
		fn(i, key)
	}
}

// durationType is compared, not walked: a Duration is one setting.
var durationType = reflect.TypeOf(libconfig.Duration{})

// Effective is the config in force when the process started with start and
// next is the last config applied: the settings a reload applies come from
// next, every other one is still start's until a restart. start nil means
// next is what the process started with.
func Effective(start, next *libconfig.Config) *libconfig.Config {
	if start == nil || next == nil || start == next {
		return next
	}
	out := *start
	mergeLive(reflect.ValueOf(&out).Elem(), reflect.ValueOf(*next), "")
	return &out
}

// mergeLive sets in dst the live settings of src. dst's slices and maps
// are replaced, never modified, so start is left alone.
func mergeLive(dst, src reflect.Value, path string) {
	if live[path] {
		dst.Set(src)
		return
	}
	if dst.Kind() != reflect.Struct || dst.Type() == durationType {
		return
	}
	eachSetting(dst.Type(), path, func(i int, key string) {
		mergeLive(dst.Field(i), src.Field(i), key)
	})
}
