package topology

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"
)

// Backend is one live TiDB instance.
type Backend struct {
	Addr       string
	StatusPort uint
	Version    string
	Labels     map[string]string
}

// Snapshot is the set of live backends at an etcd revision. It is never
// mutated after it is published; readers may keep it as long as they like.
type Snapshot struct {
	// Backends holds live backends only, keyed by Addr.
	Backends map[string]Backend
	// Revision is the etcd revision the snapshot reflects.
	Revision int64
}

// Info is the JSON TiDB writes to /topology/tidb/<addr>/info, field for
// field and in the order TiDB's infosync writes it (proxy register writes
// the same).
type Info struct {
	Version        string            `json:"version"`
	GitHash        string            `json:"git_hash"`
	IP             string            `json:"ip"`
	StatusPort     uint              `json:"status_port"`
	DeployPath     string            `json:"deploy_path"`
	StartTimestamp int64             `json:"start_timestamp"`
	Labels         map[string]string `json:"labels"`
}

const (
	keyInfo = "info"
	keyTTL  = "ttl"
)

// parseKey splits "<prefix>/<addr>/<kind>" into addr and kind. Keys that do
// not have exactly that shape are not ours and yield ok == false.
func parseKey(prefix, key string) (addr, kind string, ok bool) {
	rest, found := strings.CutPrefix(key, prefix+"/")
	if !found {
		return "", "", false
	}
	addr, kind, found = strings.Cut(rest, "/")
	if !found || addr == "" || strings.Contains(kind, "/") {
		return "", "", false
	}
	if kind != keyInfo && kind != keyTTL {
		return "", "", false
	}
	return addr, kind, true
}

// entry is what the watcher knows about one address.
type entry struct {
	info    *Backend // nil when no info key or the info JSON is malformed
	hasInfo bool     // an info key exists (possibly malformed)
	hasTTL  bool
}

// state is the watcher's private, mutable view of the prefix. Only the
// watcher goroutine touches it.
type state struct {
	entries map[string]*entry
	// followed holds the keys under the watcher's Follow prefix, and their
	// values.
	followed map[string][]byte
}

func newState() *state {
	return &state{entries: make(map[string]*entry), followed: make(map[string][]byte)}
}

func (s *state) get(addr string) *entry {
	e := s.entries[addr]
	if e == nil {
		e = &entry{}
		s.entries[addr] = e
	}
	return e
}

func (s *state) gc(addr string) {
	if e := s.entries[addr]; e != nil && !e.hasInfo && !e.hasTTL {
		delete(s.entries, addr)
	}
}

// putInfo records an info value. A malformed value leaves the backend without
// usable info (so it is skipped) and returns the parse error for logging.
func (s *state) putInfo(addr string, value []byte) error {
	e := s.get(addr)
	e.hasInfo = true
	e.info = nil
	var ti Info
	if err := json.Unmarshal(value, &ti); err != nil {
		return fmt.Errorf("decode info of %s: %w", addr, err)
	}
	e.info = &Backend{Addr: addr, StatusPort: ti.StatusPort, Version: ti.Version, Labels: ti.Labels}
	return nil
}

func (s *state) deleteInfo(addr string) {
	if e := s.entries[addr]; e != nil {
		e.hasInfo, e.info = false, nil
		s.gc(addr)
	}
}

func (s *state) putTTL(addr string) { s.get(addr).hasTTL = true }

func (s *state) deleteTTL(addr string) {
	if e := s.entries[addr]; e != nil {
		e.hasTTL = false
		s.gc(addr)
	}
}

// backends builds a fresh map of live backends; the Backend values (and their
// Labels maps) are shared with older snapshots because nothing mutates them.
func (s *state) backends() map[string]Backend {
	out := make(map[string]Backend, len(s.entries))
	for addr, e := range s.entries {
		if e.hasTTL && e.info != nil {
			out[addr] = *e.info
		}
	}
	return out
}

// sameBackends reports whether two backend sets are equal, so that ttl
// refreshes (a put every 30s per TiDB) do not wake subscribers.
func sameBackends(a, b map[string]Backend) bool {
	return maps.EqualFunc(a, b, func(x, y Backend) bool {
		return x.Addr == y.Addr && x.StatusPort == y.StatusPort && x.Version == y.Version &&
			maps.Equal(x.Labels, y.Labels)
	})
}
