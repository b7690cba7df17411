package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/pkg/server"
)

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	require.NoError(t, os.WriteFile(good, []byte("[[cluster]]\nname = \"a\"\ninstances = [\"127.0.0.1:3306\"]\n"), 0o644))
	require.Equal(t, 0, run([]string{"--check-config", good}))

	bad := filepath.Join(dir, "bad.toml")
	require.NoError(t, os.WriteFile(bad, []byte("[proxy]\nadress = \"x\"\n[[cluster]]\nname = \"A\"\n"), 0o644))
	require.Equal(t, 1, run([]string{"--check-config", bad}))
	require.Equal(t, 1, run([]string{"--config", bad}), "the server refuses to start on a bad config")
	require.Equal(t, 2, run(nil), "no config is a usage error")
}

// --help is a request, not a mistake: usage on stdout, exit 0, naming every
// mode including register; --version prints the build (issue 14).
func TestHelpAndVersion(t *testing.T) {
	for _, arg := range []string{"--help", "-h"} {
		var out, errOut bytes.Buffer
		require.Equal(t, 0, runWith([]string{arg}, &out, &errOut), arg)
		for _, want := range []string{"proxy --config FILE", "proxy --check-config FILE", "proxy --version", "proxy register", "-cpuprofile"} {
			require.Contains(t, out.String(), want, arg)
		}
		require.Empty(t, errOut.String())
	}
	var out, errOut bytes.Buffer
	require.Equal(t, 0, runWith([]string{"--version"}, &out, &errOut))
	require.Equal(t, versionLine()+"\n", out.String())
	require.Contains(t, out.String(), server.Version)
	require.Contains(t, out.String(), server.GitHash)

	out.Reset()
	errOut.Reset()
	require.Equal(t, 2, runWith(nil, &out, &errOut), "no config is a usage error")
	require.Contains(t, errOut.String(), "proxy register")
	require.Equal(t, 2, runWith([]string{"--bogus"}, &out, &errOut))
	require.Equal(t, 2, runWith([]string{"--config", "x.toml", "extra"}, &out, &errOut))
}
