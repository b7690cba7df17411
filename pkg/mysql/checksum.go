package mysql

import "github.com/cespare/xxhash/v2"

// RowChecksum hashes one text-protocol row payload as the client received
// it. Results are compared by the sum of their rows' checksums, so row order
// does not matter: the session while forwarding (live shadowing, traffic
// capture), the shadow mirror on its target and the traffic replay all hash
// rows with this one function.
func RowChecksum(payload []byte) uint64 { return xxhash.Sum64(payload) }
