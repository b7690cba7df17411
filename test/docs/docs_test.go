package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const root = "../.."

func read(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	require.NoError(t, err)
	return string(b)
}

// The sample config is reloaded while the proxy runs; it must not say it is
// read at start-up only (issue 14).
func TestSampleConfigDescribesReload(t *testing.T) {
	head := read(t, "conf/proxy.toml")
	head = head[:strings.Index(head, "[proxy]")]
	require.NotContains(t, head, "reads the file at start-up")
	for _, want := range []string{"SIGHUP", "PUT /api/v1/config", "next restart", "NEEDS-RESTART"} {
		require.Contains(t, head, want)
	}
}

var (
	// outsidePath matches absolute paths of this machine's work areas and the
	// design notes that live beside the repository, not in it.
	outsidePath = regexp.MustCompile(`(^|[\s("'` + "`" + `])/(work|home)/|\breference/[a-z-]+\.md`)
	mdLink      = regexp.MustCompile(`\]\(([^)#\s]+)(#[^)]*)?\)`)
)

// The benchmark docs point only at files in the repository (issue 14: they
// named reference notes outside it), and their relative links resolve.
func TestBenchDocsStayInRepository(t *testing.T) {
	files := []string{"docs/benchmarks.md"}
	entries, err := os.ReadDir(filepath.Join(root, "bench"))
	require.NoError(t, err)
	for _, e := range entries {
		if !e.IsDir() && (strings.HasSuffix(e.Name(), ".md") || strings.HasSuffix(e.Name(), ".sh")) {
			files = append(files, "bench/"+e.Name())
		}
	}
	require.Greater(t, len(files), 2)
	for _, f := range files {
		text := read(t, f)
		for i, line := range strings.Split(text, "\n") {
			require.False(t, outsidePath.MatchString(line), "%s:%d points outside the repository: %s", f, i+1, line)
		}
		for _, m := range mdLink.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			p := filepath.Join(root, filepath.Dir(f), target)
			rel, err := filepath.Rel(root, p)
			require.NoError(t, err)
			require.False(t, strings.HasPrefix(rel, ".."), "%s links outside the repository: %s", f, target)
			_, err = os.Stat(p)
			require.NoError(t, err, "%s links to a missing file: %s", f, target)
		}
	}
}

// The README says what make test and make bench install, and that they need
// root (issue 14).
func TestReadmeNamesWhatTestAndBenchInstall(t *testing.T) {
	readme := read(t, "README.md")
	for _, pkg := range []string{"etcd-server", "prometheus", "chromium", "sysbench", "haproxy", "mariadb-server"} {
		require.True(t, strings.Contains(readme, pkg), "README.md does not name %s", pkg)
	}
	require.True(t, regexp.MustCompile("`make test` and `make bench` install[^.]*root").MatchString(readme),
		"README.md does not say that make test and make bench install packages and need root")
	// And what the scripts really install is what the README names.
	for _, script := range []string{"scripts/install-deps.sh", "bench/run.sh", "bench/lib.sh"} {
		for _, m := range regexp.MustCompile(`need\+=\(([^)]*)\)|lean\+=\(([^)]*)\)|install -y ([a-z-]+) >`).FindAllStringSubmatch(read(t, script), -1) {
			for _, pkg := range strings.Fields(m[1] + " " + m[2] + " " + m[3]) {
				if strings.HasPrefix(pkg, "\"$") {
					continue
				}
				require.True(t, strings.Contains(readme, pkg), "%s installs %s, which README.md does not name", script, pkg)
			}
		}
	}
}
