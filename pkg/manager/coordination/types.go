package coordination

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// Modes of a Store.
const (
	ModeEtcd       = "etcd"
	ModeSingleNode = "single-node"
)

// Roles. Each cluster has its own prober role; "fleet" is one leader for the
// whole fleet.
const RoleFleet = "fleet"

// ProberRole is the role that decides fleet-wide verdicts for a cluster.
func ProberRole(cluster string) string { return "prober/" + cluster }

// Node states.
const (
	NodeUp       = "up"
	NodeDraining = "draining"
)

// Errors callers branch on.
var (
	// ErrNoLeader: nobody holds the role.
	ErrNoLeader = errors.New("no leader")
	// ErrUnavailable: this node cannot reach the coordination store.
	ErrUnavailable = errors.New("coordination unavailable")
	// ErrNotLeader: a fenced write was refused because the term is over.
	ErrNotLeader = errors.New("not the leader for this term")
)

// NodeInfo is what a node publishes about itself at
// /switchyard/<fleet>/nodes/<id>.
type NodeInfo struct {
	ID      string `json:"id"`
	Host    string `json:"host"`
	SQLPort int    `json:"sql_port"`
	APIPort int    `json:"api_port"`
	// APIHost is set when the API listens on another host than the SQL
	// port (api.addr bound to a specific address); Host otherwise.
	APIHost   string    `json:"api_host,omitempty"`
	Version   string    `json:"version"`
	Zone      string    `json:"zone,omitempty"`
	StartTime time.Time `json:"start_time"`
	State     string    `json:"state"`
	// Clusters are the clusters this node serves (its voters' scope).
	Clusters []string `json:"clusters"`
}

// Validate reports why info cannot be used to reach the node.
func (n *NodeInfo) Validate() error {
	switch {
	case n.ID == "":
		return errors.New("node info has no id")
	case n.Host == "":
		return fmt.Errorf("node %s: info has no host", n.ID)
	case n.SQLPort <= 0 || n.SQLPort > 65535:
		return fmt.Errorf("node %s: info has no valid sql_port", n.ID)
	case n.APIPort <= 0 || n.APIPort > 65535:
		return fmt.Errorf("node %s: info has no valid api_port", n.ID)
	case n.State != NodeUp && n.State != NodeDraining:
		return fmt.Errorf("node %s: info has unknown state %q", n.ID, n.State)
	}
	return nil
}

// SQLAddr and APIAddr are the node's endpoints.
func (n *NodeInfo) SQLAddr() string { return net.JoinHostPort(n.Host, strconv.Itoa(n.SQLPort)) }
func (n *NodeInfo) APIAddr() string {
	host := n.Host
	if n.APIHost != "" {
		host = n.APIHost
	}
	return net.JoinHostPort(host, strconv.Itoa(n.APIPort))
}

// Member is one registered node as read from the registry.
type Member struct {
	ID string
	// Info is nil when the value is missing or does not parse or validate;
	// Err says why. Such a member is never treated as reachable.
	Info *NodeInfo
	Err  string
	// TTL is the seconds left on the member's lease (-1 when unknown).
	TTL int64
}

// Term identifies one leadership of a role. Rev is the leader key's create
// revision: unique, increasing from one leader to the next, and the fencing
// token of every write the leader makes.
type Term struct {
	Role string
	Rev  int64
}

// LeaderInfo answers "who leads role".
type LeaderInfo struct {
	Role     string
	LeaderID string
	Term     int64
	// Node is the leader's node info; nil when missing or invalid, with
	// NodeErr saying why. Discovery never reports a leader without it.
	Node    *NodeInfo
	NodeErr string
}

// Verdict states.
const (
	VerdictDown = "down"
	VerdictUp   = "up"
)

// Vote values.
const (
	VoteDown    = "down"
	VoteUp      = "up"
	VoteUnknown = "unknown"
)

// Vote is one voter's answer in a round.
type Vote struct {
	Node   string `json:"node"`
	Vote   string `json:"vote"`
	Reason string `json:"reason,omitempty"`
}

// Verdict is a fleet-wide decision about one backend, written only by the
// prober leader of its cluster, fenced by its term.
type Verdict struct {
	Cluster   string    `json:"cluster"`
	Backend   string    `json:"backend"` // the backend's addr
	State     string    `json:"state"`   // down | up
	Term      int64     `json:"term"`
	Round     string    `json:"round"`
	DecidedAt time.Time `json:"decided_at"`
	Votes     []Vote    `json:"votes"`
}

// Store is the coordination store: the fleet's shared state (registry,
// elections, verdicts) as this node sees it. etcdstore.Store keeps it in the
// fleet etcd; Memory is the single-node stand-in.
type Store interface {
	// Mode is ModeEtcd or ModeSingleNode.
	Mode() string
	// Start begins registering this node and campaigning for roles; it
	// never waits for the store.
	Start(ctx context.Context) error
	// SetInfo replaces this node's published info (state, clusters).
	SetInfo(info NodeInfo)
	// SetRoles makes the node campaign for exactly these roles (the prober
	// roles follow the configured clusters).
	SetRoles(roles []string)
	// Members lists the registered nodes.
	Members(ctx context.Context) ([]Member, error)
	// Leader tells who leads role: ErrNoLeader, ErrUnavailable, or a
	// LeaderInfo (whose Node may be nil, see LeaderInfo).
	Leader(ctx context.Context, role string) (LeaderInfo, error)
	// Term returns this node's current term for role, if it leads it. The
	// context ends when the term does; leader-only work runs under it and
	// registers with TermWorker's Go or Hold. When not leading, the context
	// returned is already cancelled.
	Term(role string) (Term, context.Context, bool)
	// Subscribe wakes (one pending signal) when this node's terms change or
	// verdicts change.
	Subscribe() (<-chan struct{}, func())
	// WriteVerdict stores v fenced by term: ErrNotLeader when term is over.
	// term must be of role ProberRole(v.Cluster); v.Term is set to term.Rev.
	WriteVerdict(ctx context.Context, term Term, v Verdict) error
	// Verdicts are the fleet's current verdicts, keyed by backend ID
	// "<cluster>/<addr>". Never blocks. The map is a shared snapshot: do
	// not modify it.
	Verdicts() map[string]Verdict
	// Health reports the component's state: initializing, healthy,
	// abnormal (with why) or stopping.
	Health() (state, reason string)
	// Close resigns every term, deletes this node's registration and stops.
	Close()
}

// Component states shown in /api/v1/health.
const (
	StateInitializing = "initializing"
	StateHealthy      = "healthy"
	StateAbnormal     = "abnormal"
	StateStopping     = "stopping"
)

// DefaultStopBudget is how long leader-only work may take to stop after its
// term's context is cancelled, unless a store is told otherwise.
const DefaultStopBudget = 5 * time.Second

// TermWorker registers leader-only work with a term, so that the term waits
// for the work to stop (up to a stop budget, then fail-stop) before it
// resigns. Both stores implement it.
type TermWorker interface {
	// Go runs fn under the term's context; fn must return soon after ctx
	// ends. ErrNotLeader when term is not this node's current term.
	Go(term Term, fn func(ctx context.Context)) error
	// Hold registers work the caller runs itself: ctx is the term's
	// context, done (idempotent) must be called once the work has stopped.
	// ErrNotLeader when term is not current.
	Hold(term Term) (ctx context.Context, done func(), err error)
}
