package router

import (
	"net/netip"
	"slices"

	"github.com/switchyard-db/switchyard/pkg/observer"
)

// ServerInfo returns what the proxy should announce to a client that
// connected to local from client: the common greeting of the one cluster the
// listener determines, or what every cluster the client may reach shares.
// It returns nil while any of those clusters has no probed backend (the
// caller then greets with its fixed set).
func (r *Balanced) ServerInfo(local, client netip.AddrPort) *observer.ServerInfo {
	rules := r.rules.Load()
	names, all := rules.Candidates(local, client)
	topo := r.topo.Topology()
	if all {
		names = names[:0]
		for name := range rules.clusters {
			names = append(names, name)
		}
		slices.Sort(names)
	}
	if len(names) == 0 {
		return nil
	}
	infos := make([]*observer.ServerInfo, 0, len(names))
	for _, name := range names {
		in := topo.Cluster(name).CommonServer()
		if in == nil {
			return nil
		}
		infos = append(infos, in)
	}
	return observer.CommonServer(infos)
}
