package coordination

import (
	"fmt"
	"strings"
)

// CheckVerdict validates v and that term may decide it: only the prober
// leader of v's cluster writes its verdicts. Every Store's WriteVerdict
// calls it.
func CheckVerdict(term Term, v Verdict) error {
	switch {
	case v.Cluster == "" || strings.ContainsAny(v.Cluster, "/ "):
		return fmt.Errorf("verdict: bad cluster %q", v.Cluster)
	case v.Backend == "" || strings.ContainsAny(v.Backend, "/ "):
		return fmt.Errorf("verdict: bad backend %q", v.Backend)
	case v.State != VerdictDown && v.State != VerdictUp:
		return fmt.Errorf("verdict: bad state %q", v.State)
	case term.Role != ProberRole(v.Cluster):
		return fmt.Errorf("verdict for cluster %s needs a term of role %s, not %s",
			v.Cluster, ProberRole(v.Cluster), term.Role)
	}
	return nil
}

// BackendID is the key of a verdict in Verdicts: "<cluster>/<addr>".
func BackendID(cluster, addr string) string { return cluster + "/" + addr }
