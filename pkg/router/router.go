package router

import (
	"errors"
	"net/netip"
)

// ErrNoBackend is returned when no backend can take a new session.
var ErrNoBackend = errors.New("no backend available")

// ClientInfo is what is known about a client when its session is routed.
type ClientInfo struct {
	User       string
	DB         string
	ClientAddr netip.AddrPort // after PROXY protocol, the real client
	LocalAddr  netip.AddrPort // the proxy address the client connected to
	ServerName string         // TLS SNI, if any
}

// Router picks a backend for a new session.
type Router interface {
	// Route returns a backend for the client, skipping the backend IDs in
	// exclude (backends this session already failed to reach).
	Route(ci ClientInfo, exclude []string) (Lease, error)
	// MapUser returns the backend user for a COM_CHANGE_USER in a session of
	// cluster, or an error when the name routes to another cluster.
	MapUser(cluster, user string) (string, error)
}

// Lease is one session's claim on a backend.
type Lease interface {
	// ID identifies the backend ("<cluster>/<addr>").
	ID() string
	Addr() string
	Cluster() string
	// User is the user to log in as at the backend: the client's login user,
	// without the cluster prefix when user-prefix routing chose the cluster.
	User() string
	// Failed reports that the backend could not be reached; the lease is
	// released.
	Failed(err error)
	// Release ends the session's claim. It is idempotent.
	Release()
}
