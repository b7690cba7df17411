package config

import (
	"bytes"
	"os"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/stretchr/testify/require"
)

// FuzzParse feeds arbitrary bytes to Parse (it runs on API input, so it must never
// panic) and checks that an accepted config survives encoding, and that the line
// scanner finds every key the decoder saw.
func FuzzParse(f *testing.F) {
	if sample, err := os.ReadFile("../../conf/proxy.toml"); err == nil {
		f.Add(sample)
	}
	for _, seed := range []string{
		minimalCluster,
		"[proxy]\naddr = \"x\"\nconnect-timeout = 5\n",
		"[[cluster]]\nname = \"a\"\ninstances = [\"h:1\"]\n[[cluster]]\nname = \"a\"\nbogus = 1\n",
		"cluster = [{ name = \"a\", instances = [\"h:1\", \"h:2\"] }]\nproxy.proxy-protocol = \"v2\"\n",
		"security = { server-tls = {\n cert = \"\"\"\nx\"\"\" } }\n",
		"[log\nlevel = 'debug'\n",
		"a = 1979-05-27 07:32:00Z\n[[a.b]]\n\"c.d\".e = [[1], {f = '''\n'''}]\n",
		"\ufeff[proxy]\r\nmax-connections = -1\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		src := string(data)
		lines := scanKeyLines(src) // must not panic even on rejected input

		var raw map[string]any
		if md, err := toml.Decode(src, &raw); err == nil {
			for _, k := range md.Keys() {
				require.NotEmpty(t, lines.placesOf(k.String()), "no line for key %s", k)
			}
		}

		c, err := Parse(data)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalid)
			require.Nil(t, c)
			return
		}
		var buf bytes.Buffer
		require.NoError(t, toml.NewEncoder(&buf).Encode(c))
		again, err := Parse(buf.Bytes())
		require.NoError(t, err, buf.String())
		require.Equal(t, c, again)
	})
}
