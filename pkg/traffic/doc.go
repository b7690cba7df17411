// Package traffic captures one cluster's client commands into a compressed
// file, for inspection and replay: every command with its timing, session,
// user, schema, statement text, prepared-statement lifecycle (prepare with
// the statement id the backend gave, executes with their raw parameters,
// close) and outcome (latency, rows, error code).
//
// Capture is off the query path like the query log: sessions queue records
// without waiting and one writer goroutine gzips them into
// <dir>/traffic-<cluster>-<UTC time>.jsonl.gz; when it falls behind,
// records are dropped and counted, and the count is the capture's reported
// overhead (besides the per-command check, one atomic load while no capture
// runs). One capture runs at a time.
package traffic
