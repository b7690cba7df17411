// Package mysqldouble is an in-process MySQL 8 server double for tests.
//
// Debian's MariaDB cannot authenticate with caching_sha2_password, so the proxy's
// authentication pass-through could not be exercised end to end against it. This double
// speaks exactly the part of the MySQL wire protocol that matters for that: the v10
// handshake, the SSLRequest/TLS upgrade, AuthSwitchRequest, and caching_sha2_password with
// its fast-auth cache, its TLS cleartext full auth and its RSA public-key full auth, plus
// mysql_native_password accounts (Config.NativeUsers) for the older plugin. After
// authentication it answers a handful of commands (COM_PING, COM_INIT_DB, COM_QUERY with a
// trivial SELECT evaluator, COM_STMT_PREPARE/EXECUTE/CLOSE, COM_QUIT) so that drivers can
// finish connecting and run simple queries, and it keeps the session state a migrating
// proxy cares about (SET variables, @user variables, prepared statements, transactions,
// table and advisory locks, temporary tables). With Config.TiDB it speaks TiDB's session
// migration protocol (tidb.go): SHOW SESSION_STATES, the tidb_session_token auth plugin and
// SET SESSION_STATES, with TiDB's refusals (ERR 8146, expired or foreign tokens). It
// answers a migration account's read of a NativeUsers account's stored hash from
// mysql.user (mysqluser.go), so that MySQL-style migration and failover run against it. Counters
// (Stats) let tests assert which authentication path was taken.
//
// It is written from the protocol documentation and is not a database: every query other
// than the few recognised SELECT forms and USE is answered with an empty OK.
package mysqldouble
