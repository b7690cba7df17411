// Package fleet ties this node to the fleet: it keeps the node's
// registration and roles in step with the config, hands the fleet's down
// verdicts to the router (and ends the idle sessions on a backend newly voted
// down), and runs the vote rounds of each prober role this node leads, one
// worker per term under that term's context.
//
// Everything it needs is behind small interfaces declared here, by the
// consumer: the coordination store (Store, Terms), the vote rounds (Rounds,
// TermObserver), the router (Routing), the topology (Topology) and the
// sessions (Sessions). pkg/server builds the real parts and wires them.
package fleet
