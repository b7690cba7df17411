// Package router decides where a new client session goes: which cluster
// (by route rules, added with the multi-cluster runtime) and which backend
// inside it. The proxy only sees the Router interface; what it returns is a
// Lease that the session releases when it ends, so that session counts stay
// exact for least-connections balancing.
package router
