// Package proxy owns the SQL listener: it accepts client connections,
// applies the PROXY protocol and the connection limit, runs one session per
// connection and shuts them down gracefully.
package proxy
