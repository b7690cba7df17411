package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
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
