package shadow

import "time"

// Sampler decides which statements are mirrored. A session (pkg/proxy/backend)
// asks it about each candidate statement, and hands the sampled ones, with what
// its client received, to the Sink it returns: the contract lives here, on the
// side that implements it, so that the data plane depends on shadowing and not
// the other way round.
type Sampler interface {
	// Sample is asked once per candidate statement of a session routed to
	// cluster; it returns where to submit it, or nil when it is not
	// sampled. It runs on the query path and must be cheap and never block.
	Sample(cluster string) Sink
}

// Sink receives one sampled statement.
type Sink interface {
	// Submit hands over a sampled statement and what its client received.
	// It must not block or keep r (r.Text aliases session memory).
	Submit(r *Result)
}

// Result is what the client received for a sampled statement.
type Result struct {
	// Text is the COM_QUERY statement.
	Text []byte
	// DB is the session's schema when the statement ran; Charset its
	// handshake collation (the mirror logs in with the same one).
	DB      string
	Charset byte
	// Rows counts result rows; Checksum sums mysql.RowChecksum over them, so the
	// order of rows does not matter.
	Rows     uint64
	Checksum uint64
	// ErrCode is the code of the ERR that answered it (0: none).
	ErrCode uint16
	Latency time.Duration
	// Uncomparable: a row did not fit the session's read buffer (about
	// 32 KiB) and was streamed without being checksummed; the mirror
	// counts the statement as skipped.
	Uncomparable bool
}
