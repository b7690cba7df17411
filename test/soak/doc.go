// Package soak runs the proxy for a long time under mixed load and faults
// together (`make soak`, issue 13): two clusters behind two proxies of a
// fleet, sysbench and a counting load client through each cluster, 1,000
// idle connections, a config reload every 10 s, a backend SIGKILLed every
// 60 s, etcd and one proxy restarted once. At the end it checks invariants
// and writes a report (JSON and text).
//
// The soak itself is soak_test.go behind the "soak" build tag, so that
// `go test ./...` and `make test` never run it. What it checks (which errors
// a stream may see and when, the ledger of acknowledged commits, the
// resource baseline, sysbench's output) is plain code in this package, unit
// tested without the tag.
package soak
