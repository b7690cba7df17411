// Package api holds the JSON documents of the HTTP API (/api/v1/...): what
// pkg/server/api answers and what proxyctl, the status page and the tests
// decode. A field renamed here is renamed for every reader.
//
// It depends on the standard library only, so that a client (proxyctl)
// can decode the API without linking the proxy, its etcd client or gRPC;
// cmd/proxyctl's TestProxyctlLinksNoEtcdOrGRPC keeps proxyctl that way.
package api
