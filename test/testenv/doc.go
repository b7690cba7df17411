// Package testenv starts the real processes that end-to-end tests run against: throwaway
// MariaDB servers (with the test users and optional TLS already set up), the switchyard proxy
// binary built from this module, etcd servers run from the etcd binary (so that a test can
// freeze, kill and restart them), and the certificates MariaDB and the proxy need. Every helper ties its
// processes and files to a testing.TB so a failing or panicking test never leaves a server
// behind; the process-wide pieces (a MariaDB shared by a whole package, the built proxy binary)
// are torn down by Teardown, which Wrap arranges to run after m.Run. The one exception is
// LaunchMariaDB, for programs that run servers outside go test (cmd/playground): its caller owns
// the server and closes it.
package testenv
