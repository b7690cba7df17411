package main

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// config validate runs lib/config offline: no --api is needed, and every
// problem is printed with its line.
func TestConfigValidate(t *testing.T) {
	t.Chdir(t.TempDir())
	files := map[string]string{
		"good.toml": "[proxy]\naddr = \"127.0.0.1:6000\"\n\n[api]\naddr = \"127.0.0.1:3080\"\ntoken = \"t\"\n\n" +
			"[[cluster]]\nname = \"east\"\netcd-endpoints = [\"127.0.0.1:2379\"]\n\n" +
			"[[cluster]]\nname = \"west\"\ninstances = [\"127.0.0.1:3306\"]\n\n" +
			"[[route]]\ncluster = \"west\"\nusers = [\"batch*\"]\n",
		"bad.toml": "[proxy]\nadress = \"x\"\nmax-connections = -1\n\n[[cluster]]\nname = \"A\"\n\n" +
			"[[cluster]]\nname = \"b\"\ninstances = [\"nohost\"]\n",
		"syntax.toml": "[proxy\naddr = 1\n",
		"type.toml":   "[proxy]\naddr = 1\n",
	}
	for name, text := range files {
		require.NoError(t, os.WriteFile(name, []byte(text), 0o644))
	}
	cases := []struct {
		golden string
		file   string
		code   int
	}{
		{"validate_good", "good.toml", exitOK},
		{"validate_bad", "bad.toml", exitNo},
		{"validate_syntax", "syntax.toml", exitNo},
		{"validate_type", "type.toml", exitNo},
		{"validate_missing", "missing.toml", exitNo},
	}
	for _, tc := range cases {
		t.Run(tc.golden, func(t *testing.T) {
			// An unreachable --api proves that nothing is asked of it.
			args := []string{"config", "validate", tc.file}
			res := runWith(nil, "", append([]string{"--api", "http://127.0.0.1:1"}, args...)...)
			require.Equal(t, tc.code, res.code, res.stderr)
			golden(t, tc.golden, res.transcript(args))
		})
	}
}
