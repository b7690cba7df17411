// Package shadow mirrors a sampled fraction of one cluster's read-only
// autocommit statements to another cluster and compares the results.
//
// A session (pkg/proxy/backend/shadow.go) asks Manager.Sample for each
// SELECT it forwards outside a transaction; a sampled one is checksummed
// while its rows are forwarded and handed to the mirror with Submit, which
// never blocks: the statement goes into the mirror's bounded queue or is
// dropped and counted. A few worker goroutines per mirror, each with its
// own connection to the target cluster and its own credentials, run the
// statements there and compare row count, row checksum and error code,
// keeping the outcome per digest. Nothing here can delay or fail a client.
package shadow
