package backend

import (
	"encoding/binary"

	"github.com/switchyard-db/switchyard/pkg/mysql"
)

// stmtIDs translates prepared-statement ids once a session has moved: the
// client keeps the ids it was given, the new backend has its own. Before
// any move the map is nil and ids pass through untouched.
type stmtIDs struct {
	toBackend map[uint32]uint32 // client id -> backend id
	toClient  map[uint32]uint32 // backend id -> client id
	// next is the next client id handed out for a statement prepared after
	// the move.
	next uint32
}

func (t *stmtIDs) active() bool { return t.toBackend != nil }

// add records that the client's statement id c is b on the backend.
func (t *stmtIDs) add(c, b uint32) {
	t.toBackend[c] = b
	t.toClient[b] = c
	if c >= t.next {
		t.next = c + 1
	}
}

func (t *stmtIDs) remove(c uint32) {
	if b, ok := t.toBackend[c]; ok {
		delete(t.toBackend, c)
		delete(t.toClient, b)
	}
}

// requestToBackend rewrites the statement id of a COM_STMT_* request (bytes
// 1-4) in place before it is forwarded.
func (t *stmtIDs) requestToBackend(io *mysql.PacketIO, pk mysql.Packet) {
	if !t.active() || len(pk.Data) < 5 {
		return
	}
	c := binary.LittleEndian.Uint32(pk.Data[1:])
	b, ok := t.toBackend[c]
	if !ok {
		// Unknown to the proxy: let the backend refuse it, but never let
		// it reach another statement by accident.
		b = 0xffffffff
	}
	var buf [4]byte
	binary.LittleEndian.PutUint32(buf[:], b)
	io.PatchCurrent(1, buf[:])
}

// prepareToClient gives a statement the backend just prepared a client id
// and rewrites the PREPARE_OK packet (bytes 1-4) in place. It returns the
// client id.
func (t *stmtIDs) prepareToClient(io *mysql.PacketIO, b uint32) uint32 {
	if !t.active() {
		return b
	}
	c := t.next
	t.add(c, b)
	var buf [4]byte
	binary.LittleEndian.PutUint32(buf[:], c)
	io.PatchCurrent(1, buf[:])
	return c
}
