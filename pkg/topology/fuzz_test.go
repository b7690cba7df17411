package topology

import (
	"encoding/json"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.uber.org/zap"
)

// fuzzEvent is one put or delete the fuzzer replays against the watcher's
// state, as etcd would deliver it.
type fuzzEvent struct {
	del   bool
	key   string
	value []byte
}

// fuzzDecodeEvents turns the fuzzer's bytes into events: per event one op
// byte (bit 0: delete), one key selector and one value length, then the
// value. Keys come from a small pool (so puts and deletes meet) that also
// holds the fuzzer's own key and shapes that are not ours.
func fuzzDecodeEvents(rawKey string, script []byte) []fuzzEvent {
	keys := []string{
		DefaultPrefix + "/a:1/info", DefaultPrefix + "/a:1/ttl",
		DefaultPrefix + "/b:2/info", DefaultPrefix + "/b:2/ttl",
		DefaultPrefix + "/a:1/other", DefaultPrefix + "/a:1/info/x",
		DefaultPrefix + "//info", DefaultPrefix + "x/a:1/ttl",
		rawKey, DefaultPrefix + "/" + rawKey + "/info", DefaultPrefix + "/" + rawKey + "/ttl",
	}
	var out []fuzzEvent
	for len(script) >= 3 && len(out) < 64 {
		op, sel, n := script[0], script[1], int(script[2])
		script = script[3:]
		n = min(n, len(script))
		ev := fuzzEvent{del: op&1 == 1, key: keys[int(sel)%len(keys)], value: script[:n]}
		script = script[n:]
		out = append(out, ev)
	}
	return out
}

// fuzzModel is the oracle: the raw key/value store, from which the live set
// is derived the way the package doc describes it (an address is live when
// it has a ttl key and an info key whose JSON decodes).
func fuzzModel(kv map[string][]byte) map[string]Backend {
	out := map[string]Backend{}
	for key, val := range kv {
		rest, ok := strings.CutPrefix(key, DefaultPrefix+"/")
		if !ok {
			continue
		}
		addr, ok := strings.CutSuffix(rest, "/info")
		if !ok || addr == "" || strings.Contains(addr, "/") {
			continue
		}
		if _, live := kv[DefaultPrefix+"/"+addr+"/ttl"]; !live {
			continue
		}
		var ti Info
		if json.Unmarshal(val, &ti) != nil {
			continue
		}
		out[addr] = Backend{Addr: addr, StatusPort: ti.StatusPort, Version: ti.Version, Labels: ti.Labels}
	}
	return out
}

// FuzzTopologyEvents feeds the watcher arbitrary keys and info JSON in any
// order and checks its live set against the model: a malformed info value
// never crashes the watcher, never makes a backend live, and no delete is
// lost (an address that lost a key leaves no entry behind).
func FuzzTopologyEvents(f *testing.F) {
	info := []byte(`{"version":"8.0.11-TiDB-v7.5.0","git_hash":"abc","ip":"10.0.0.1","status_port":10080,"deploy_path":"/x","start_timestamp":1700000000,"labels":{"zone":"a"}}`)
	ev := func(op, sel byte, v []byte) []byte { return append([]byte{op, sel, byte(len(v))}, v...) }
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	f.Add("c:3", cat(ev(0, 0, info), ev(0, 1, []byte("1"))))
	f.Add("c:3", cat(ev(0, 0, info), ev(0, 1, nil), ev(1, 1, nil), ev(0, 2, []byte(`{`)), ev(0, 3, nil)))
	f.Add("c:3", cat(ev(0, 9, []byte(`{"status_port":-1}`)), ev(0, 10, nil), ev(0, 9, []byte(`{"labels":{"zone":1}}`))))
	f.Add("x/y", cat(ev(0, 9, info), ev(0, 10, nil), ev(1, 9, nil)))
	f.Add("", cat(ev(0, 6, info), ev(0, 7, nil), ev(0, 4, info), ev(0, 5, info)))
	f.Add("c:3", cat(ev(0, 0, []byte(`null`)), ev(0, 1, nil), ev(0, 2, []byte(`{"labels":null,"version":"\u0000"}`)), ev(0, 3, nil)))

	f.Fuzz(func(t *testing.T, rawKey string, script []byte) {
		w := NewWatcher(zap.NewNop(), nil, "")
		st := newState()
		kv := map[string][]byte{}
		for _, e := range fuzzDecodeEvents(rawKey, script) {
			mkv := &mvccpb.KeyValue{Key: []byte(e.key), Value: e.value}
			if e.del {
				w.applyDelete(st, mkv)
				delete(kv, e.key)
			} else {
				w.applyPut(st, mkv)
				kv[e.key] = e.value
			}
			got, want := st.backends(), fuzzModel(kv)
			if !sameBackends(got, want) {
				t.Fatalf("after %+v: live set %v, model %v", e, got, want)
			}
		}
		// Every entry left must be backed by a key still in the store.
		for addr, e := range st.entries {
			_, info := kv[DefaultPrefix+"/"+addr+"/info"]
			_, ttl := kv[DefaultPrefix+"/"+addr+"/ttl"]
			if e.hasInfo != info || e.hasTTL != ttl {
				t.Fatalf("entry %q: hasInfo %v hasTTL %v, store info %v ttl %v", addr, e.hasInfo, e.hasTTL, info, ttl)
			}
		}
		// publish must accept whatever state the events left.
		w.publish(st, 1)
		if snap := w.Snapshot(); snap == nil || !sameBackends(snap.Backends, fuzzModel(kv)) {
			t.Fatalf("published snapshot differs from the model")
		}
	})
}
