package config

import (
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/stretchr/testify/require"
)

func TestScanKeyLines(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want map[string]int // path -> line; only these are checked
	}{
		{
			name: "tables and keys",
			doc:  "# c [x]\n[proxy]\naddr = \"a\" # b = 1\n\n[security.server-tls]\ncert = 'c'\n",
			want: map[string]int{"proxy": 2, "proxy.addr": 3, "security.server-tls": 5, "security.server-tls.cert": 6},
		},
		{
			name: "arrays of tables are numbered",
			doc:  "[[cluster]]\nname = \"a\"\n[[cluster]]\nname = \"b\"\ninstances = [\n  \"h:1\",\n\n  \"h:2\", # x\n]\n",
			want: map[string]int{
				"cluster[0]": 1, "cluster[0].name": 2,
				"cluster[1]": 3, "cluster[1].name": 4, "cluster[1].instances": 5,
				"cluster[1].instances[0]": 6, "cluster[1].instances[1]": 8,
			},
		},
		{
			name: "sub-table of the latest element and nested arrays",
			doc:  "[[a]]\n[[a.b]]\nx = 1\n[[a]]\n[a.c]\ny = 2\n[[a.b]]\nz = 3\n",
			want: map[string]int{"a[0].b[0].x": 3, "a[1]": 4, "a[1].c": 5, "a[1].c.y": 6, "a[1].b[0]": 7, "a[1].b[0].z": 8},
		},
		{
			name: "dotted and quoted keys",
			doc:  "proxy . addr = \"a\"\n\"log\".'level' = \"x\"\n[\"a.b\"]\nc = 1\n",
			want: map[string]int{"proxy": 1, "proxy.addr": 1, "log.level": 2, `"a.b".c`: 4},
		},
		{
			name: "inline tables, also across lines",
			doc:  "security = { server-tls = { cert = \"c\" },\n  backend-tls = {\n    ca = \"x\",\n  } }\nz = 1\n",
			want: map[string]int{"security.server-tls.cert": 1, "security.backend-tls": 2, "security.backend-tls.ca": 3, "z": 5},
		},
		{
			name: "array of inline tables",
			doc:  "cluster = [\n  { name = \"a\" },\n  { name = \"b\",\n    instances = [\"h:1\"] },\n]\n",
			want: map[string]int{"cluster[0].name": 2, "cluster[1].name": 3, "cluster[1].instances[0]": 4},
		},
		{
			name: "multi-line strings hide look-alike keys",
			doc:  "a = \"\"\"\n[fake]\nb = \\\"\"\"\"\nc = '''\nd = 1\n'''''\ne = \"q\\\"#\" # \"\nf = 1979-05-27 07:32:00Z\ng = 2\n",
			want: map[string]int{"a": 1, "c": 4, "e": 7, "f": 8, "g": 9},
		},
		{
			name: "CRLF and BOM",
			doc:  "\ufeff[log]\r\nlevel = \"x\"\r\n\r\nformat = \"y\"\r\n",
			want: map[string]int{"log": 1, "log.level": 2, "log.format": 4},
		},
		{
			name: "nested arrays",
			doc:  "a = [[1, 2], [\n3]]\nb = 1\n",
			want: map[string]int{"a[0][1]": 1, "a[1]": 1, "a[1][0]": 2, "b": 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The scanner only sees documents the decoder accepted.
			var raw map[string]any
			_, err := toml.Decode(tt.doc, &raw)
			require.NoError(t, err)

			lines := scanKeyLines(tt.doc)
			got := make(map[string]int, len(tt.want))
			for path := range tt.want {
				got[path] = lines.byPath[path]
			}
			require.Equal(t, tt.want, got, "all: %v", lines.byPath)
		})
	}
}

func TestKeyLinesLookup(t *testing.T) {
	lines := scanKeyLines("[proxy]\naddr = \"x\"\n[[cluster]]\nname = \"a\"\n")
	require.Equal(t, 2, lines.lineOf("proxy.addr"))
	require.Equal(t, 1, lines.lineOf("proxy.max-connections"), "unwritten key: its table")
	require.Equal(t, 3, lines.lineOf("cluster[0].instances[2]"), "unwritten key: its element")
	require.Zero(t, lines.lineOf("log.level"))
	require.Equal(t, []keyPlace{{path: "cluster[0].name", line: 4}}, lines.placesOf("cluster.name"))

	var none *keyLines
	require.Zero(t, none.lineOf("proxy.addr"))
	require.Nil(t, none.placesOf("proxy.addr"))
}

// TestScanKeyLinesStopsOnGarbage: input the decoder rejects never reaches the
// scanner in Parse, but the scanner must still end without panicking.
func TestScanKeyLinesStopsOnGarbage(t *testing.T) {
	for _, doc := range []string{"", "[", "[[", "a", "a =", "a = \"", "a = '''", "a = [1,", "a = {b", "= 1", "a = \"\\", "[a\n", "a = { = }"} {
		require.NotPanics(t, func() { scanKeyLines(doc) }, doc)
	}
}
