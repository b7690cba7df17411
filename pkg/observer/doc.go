// Package observer holds what the proxy knows about its backends: the
// immutable Topology snapshot that merges every cluster runtime's view
// (backends keyed by BackendID "<cluster>/<addr>", with health, metrics and
// labels, plus each cluster's state), the aggregator that publishes it to
// subscribers without ever waiting for them, and the health prober that each
// cluster runtime runs over its own backends.
package observer
