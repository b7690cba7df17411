package observer

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCommonServer(t *testing.T) {
	maria := func(v string, caps, ext uint32) *ServerInfo {
		return &ServerInfo{Version: v, Capability: caps, ExtCapability: ext, Charset: 8}
	}
	tests := []struct {
		name  string
		infos []*ServerInfo
		want  *ServerInfo
	}{
		{"none", nil, nil},
		{"only unprobed", []*ServerInfo{nil, nil}, nil},
		{"one", []*ServerInfo{maria("10.11", 0xf0, 0x1d)}, maria("10.11", 0xf0, 0x1d)},
		{"intersection, majority version", []*ServerInfo{
			maria("10.6", 0xf0, 0x05), nil, maria("10.11", 0x70, 0x1d), maria("10.11", 0xf1&^1, 0x1c),
		}, &ServerInfo{Version: "10.11", Capability: 0x70, ExtCapability: 0x04, Charset: 8}},
		{"tie goes to the first", []*ServerInfo{maria("b", 2, 0), maria("a", 2, 0)}, maria("b", 2, 0)},
		{"a MySQL server drops the MariaDB word", []*ServerInfo{
			maria("10.11", 0xf0, 0x1d), {Version: "8.0.36", Capability: 0xf1, Charset: 255},
		}, &ServerInfo{Version: "10.11", Capability: 0xf0, Charset: 8}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, CommonServer(tt.infos))
		})
	}
	v := &ClusterView{Backends: []*Backend{{Health: Health{Server: maria("10.11", 6, 1)}}, {}}}
	require.Equal(t, maria("10.11", 6, 1), v.CommonServer())
}
