package router

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"

	"github.com/switchyard-db/switchyard/lib/config"
)

// ErrNoRoute is wrapped when no rule matches a client and there is no
// default cluster.
var ErrNoRoute = errors.New("no route")

// Rules choose a client's cluster. They are immutable; a reload builds new
// Rules and swaps them in.
type Rules struct {
	routes         []rule
	defaultCluster string
	userPrefix     bool
	clusters       map[string]bool
}

type rule struct {
	cluster     string
	ports       []int
	users       []string
	nets        []netip.Prefix
	serverNames []string
}

// NewRules compiles the routing part of a config that has passed Check.
func NewRules(cfg *config.Config) *Rules {
	r := &Rules{
		defaultCluster: cfg.EffectiveDefaultCluster(),
		userPrefix:     cfg.Proxy.UserPrefixRouting,
		clusters:       make(map[string]bool, len(cfg.Clusters)),
	}
	for _, c := range cfg.Clusters {
		r.clusters[c.Name] = true
	}
	for _, rt := range cfg.Routes {
		r.routes = append(r.routes, rule{
			cluster:     rt.Cluster,
			ports:       rt.Ports,
			users:       rt.Users,
			nets:        rt.ClientNets(),
			serverNames: rt.ServerNames,
		})
	}
	return r
}

// Match returns the cluster for a client and the user to log in as there.
// With user-prefix routing, "east.alice" goes to cluster east as "alice"
// before any rule is looked at; a prefix that is no cluster's name is part of
// the user name.
func (r *Rules) Match(ci ClientInfo) (cluster, user string, err error) {
	if r.userPrefix {
		if prefix, rest, ok := strings.Cut(ci.User, "."); ok && rest != "" && r.clusters[prefix] {
			return prefix, rest, nil
		}
	}
	for _, rt := range r.routes {
		if rt.matches(ci) {
			return rt.cluster, ci.User, nil
		}
	}
	if r.defaultCluster != "" {
		return r.defaultCluster, ci.User, nil
	}
	return "", "", fmt.Errorf("%w for user '%s' from %s on port %d, and proxy.default-cluster is not set",
		ErrNoRoute, ci.User, ci.ClientAddr.Addr().Unmap(), ci.LocalAddr.Port())
}

// MapUser returns the backend user for a login name in a session already
// routed to cluster (COM_CHANGE_USER): the cluster's own prefix is removed,
// and another cluster's prefix is refused, since a session cannot move.
func (r *Rules) MapUser(cluster, user string) (string, error) {
	if !r.userPrefix {
		return user, nil
	}
	prefix, rest, ok := strings.Cut(user, ".")
	if !ok || rest == "" || !r.clusters[prefix] {
		return user, nil
	}
	if prefix != cluster {
		return "", fmt.Errorf("user '%s' belongs to cluster %s, but this session is connected to cluster %s", user, prefix, cluster)
	}
	return rest, nil
}

func (rt *rule) matches(ci ClientInfo) bool {
	if len(rt.ports) > 0 && !slices.Contains(rt.ports, int(ci.LocalAddr.Port())) {
		return false
	}
	if len(rt.users) > 0 && !slices.ContainsFunc(rt.users, func(g string) bool {
		ok, _ := path.Match(g, ci.User)
		return ok
	}) {
		return false
	}
	if len(rt.nets) > 0 {
		ip := ci.ClientAddr.Addr().Unmap()
		if !slices.ContainsFunc(rt.nets, func(n netip.Prefix) bool { return n.Contains(ip) }) {
			return false
		}
	}
	if len(rt.serverNames) > 0 && !slices.ContainsFunc(rt.serverNames, func(n string) bool {
		return strings.EqualFold(n, ci.ServerName)
	}) {
		return false
	}
	return true
}

// Candidates returns the clusters a client may be routed to, judged before
// its greeting, when only the listener address and the client address are
// known: a route port or client network can settle it, while user and TLS
// server name rules are not known yet. A rule that may match adds its
// cluster; a rule that must match ends the list. all is set when user-prefix
// routing could pick any cluster.
func (r *Rules) Candidates(local, client netip.AddrPort) (clusters []string, all bool) {
	if r.userPrefix && len(r.clusters) > 1 {
		return nil, true
	}
	add := func(c string) {
		if !slices.Contains(clusters, c) {
			clusters = append(clusters, c)
		}
	}
	ci := ClientInfo{LocalAddr: local, ClientAddr: client}
	for _, rt := range r.routes {
		pre := rt
		pre.users, pre.serverNames = nil, nil
		if !pre.matches(ci) {
			continue
		}
		add(rt.cluster)
		if len(rt.users) == 0 && len(rt.serverNames) == 0 {
			return clusters, false
		}
	}
	if r.defaultCluster != "" {
		add(r.defaultCluster)
	}
	return clusters, false
}
