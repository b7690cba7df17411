package topology

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseKey(t *testing.T) {
	tests := []struct {
		key, addr, kind string
		ok              bool
	}{
		{"/topology/tidb/10.0.0.1:4000/info", "10.0.0.1:4000", "info", true},
		{"/topology/tidb/10.0.0.1:4000/ttl", "10.0.0.1:4000", "ttl", true},
		{"/topology/tidb/10.0.0.1:4000/other", "", "", false},
		{"/topology/tidb/10.0.0.1:4000", "", "", false},
		{"/topology/tidb//info", "", "", false},
		{"/topology/tidb/a/b/info", "", "", false},
		{"/topology/tidbx/10.0.0.1:4000/info", "", "", false},
		{"/topology/tiproxy/10.0.0.1:6000/info", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			addr, kind, ok := parseKey(DefaultPrefix, tt.key)
			require.Equal(t, tt.ok, ok)
			require.Equal(t, tt.addr, addr)
			require.Equal(t, tt.kind, kind)
		})
	}
}

func TestStateLiveness(t *testing.T) {
	st := newState()
	require.NoError(t, st.putInfo("a:1", []byte(`{"version":"v","status_port":10080}`)))
	require.Empty(t, st.backends(), "info without ttl is not live")
	st.putTTL("a:1")
	require.Equal(t, map[string]Backend{"a:1": {Addr: "a:1", Version: "v", StatusPort: 10080}}, st.backends())
	require.Error(t, st.putInfo("a:1", []byte(`{`)))
	require.Empty(t, st.backends(), "malformed info replaces the good one")
	st.deleteInfo("a:1")
	st.deleteTTL("a:1")
	require.Empty(t, st.entries)
}
