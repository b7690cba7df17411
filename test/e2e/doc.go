// Package e2e holds end-to-end tests: they start real MariaDB servers (mariadbd on throwaway
// data directories) and the real proxy binary built from cmd/proxy, then talk to the proxy as a
// MySQL client would, with go-sql-driver over TCP. Nothing is mocked, so a passing run means the
// handshake, authentication, TLS, forwarding, reload and shutdown paths work against a real
// server. The helpers live in test/testenv. Running them needs mariadbd and
// mariadb-install-db; TestMain fails the package when they are missing unless
// SWITCHYARD_E2E_ALLOW_SKIP=1 is set. A failed test prints the tails of its proxy, MariaDB and
// etcd logs and keeps the files under $SWITCHYARD_E2E_LOG_DIR (testenv.OnFailureShowLog).
package e2e
