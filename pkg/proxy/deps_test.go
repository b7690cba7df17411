package proxy

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The data plane is a leaf of the import graph: the health prober, shadowing, the API and the
// rest reach sessions only through pkg/server, the one package that assembles the proxy
// (issue 11: the observer used to import the proxy's codec, against the data flow). The
// contracts the session calls out through (shadow.Sampler, router.Router, ...) live with the
// packages that implement them.
func TestOnlyTheServerImportsTheProxy(t *testing.T) {
	const module = "github.com/switchyard-db/switchyard/"
	goBin, err := exec.LookPath("go")
	require.NoError(t, err, "this test lists the module's imports with the go command")
	out, err := exec.Command(goBin, "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"...").CombinedOutput()
	require.NoError(t, err, "go list: %s", out)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Greater(t, len(lines), 20, "the listing names the module's packages")
	importers := map[string]bool{}
	for _, line := range lines {
		fields := strings.Fields(line)
		pkg := fields[0]
		if pkg == module+"pkg/proxy" || strings.HasPrefix(pkg, module+"pkg/proxy/") {
			continue
		}
		for _, imp := range fields[1:] {
			if imp == module+"pkg/proxy" || strings.HasPrefix(imp, module+"pkg/proxy/") {
				importers[strings.TrimPrefix(pkg, module)] = true
			}
		}
	}
	require.Equal(t, map[string]bool{"pkg/server": true}, importers, "packages outside pkg/proxy that import it")
}
