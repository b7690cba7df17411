// Package querylog writes an optional JSON-lines log of statements: all of
// them, those slower than a threshold, or those that failed. Sessions hand
// entries to a bounded channel without ever waiting; one writer goroutine
// encodes and writes them through a rotating, size-bounded file
// (lumberjack). When the writer falls behind (a slow or stalled disk, a pipe
// nobody reads) the channel fills and further entries are dropped and
// counted: the query path never blocks on the log.
package querylog
