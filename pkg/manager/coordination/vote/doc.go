// Package vote decides fleet-wide backend verdicts by a vote of the nodes
// that serve a cluster. A Voter answers a leader's request
// (POST /internal/v1/probe-vote, Path) with a fresh probe of its own; a
// Coordinator, run by the prober leader of a cluster under that term's
// context, proposes verdicts (Reconcile), collects the votes of the live
// members (PeerClient) and writes a verdict fenced by the term through a
// coordination.Store when a majority agrees, behind rate and last-backend
// guards.
package vote
