// Package balance scores the backends of one cluster for a new session. It
// is pure: functions over a candidate list, no state and no I/O, so the
// router's choice can be tested exhaustively.
//
// Policy "resource" compares, in order: health (routable only when healthy;
// recent failed probes count against a backend), memory risk, CPU usage in 5%
// steps, zone (same zone as the proxy first), then session count. Policy
// "connection" compares session counts only. Between two metric readings a
// backend's CPU is estimated from the sessions routed to it since, so a burst
// of new sessions does not all land on the backend that looked idlest.
package balance
