// Package backend runs one client session: it completes the MySQL handshake
// with the client, routes the session to a backend, relays authentication
// between them without ever learning the password, and then forwards
// commands and their responses packet by packet while tracking the session
// state (transaction, current database, prepared statements, cursors) that
// draining and migration decisions depend on.
//
// One goroutine per busy session does all of this in request/response
// order: no goroutine hand-offs on the query path, and no pooled buffers
// held while the session is idle. A session idle for a second parks and
// holds no goroutine at all (park.go).
package backend
