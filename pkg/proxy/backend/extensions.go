package backend

import (
	"github.com/switchyard-db/switchyard/pkg/mysql"
)

// Protocol extensions that change what a response looks like; each side of
// the session negotiated them identically (capabilities.go), so the proxy
// follows the backend's packets and forwards them unchanged.

// nextReply reads the first packet of a command's answer, forwarding
// MariaDB progress reports (MARIADB_CLIENT_PROGRESS) to the client at once:
// they come before the answer, look like an ERR packet, and are not one.
func (s *Session) nextReply() (mysql.Packet, error) {
	for {
		pk, err := s.next()
		if err != nil || s.backendExt&mysql.MariaDBClientProgress == 0 || !pk.Complete || !mysql.IsProgress(pk.Data) {
			return pk, err
		}
		if err := s.forward(); err != nil {
			return pk, err
		}
		// The client shows it now, whatever the backend does next.
		if err := s.client.Flush(); err != nil {
			return pk, err
		}
	}
}

// columnsFollowing returns how many column definitions follow a result
// set's column-count packet: its count, or none when the backend says the
// metadata is not sent (MySQL's resultset_metadata=NONE with
// CLIENT_OPTIONAL_RESULTSET_METADATA, or MariaDB's metadata caching: the
// client kept the columns of the statement's previous execution).
func (s *Session) columnsFollowing(pk mysql.Packet) (uint64, bool) {
	cols, _, n, ok := mysql.ReadLenEncInt(pk.Data)
	if !ok {
		return 0, false
	}
	if !s.metadataOptional() {
		return cols, true
	}
	if len(pk.Data) <= n {
		return 0, false
	}
	if pk.Data[n] == 0 {
		return 0, true
	}
	return cols, true
}

// prepareMetadataFollows reports whether a COM_STMT_PREPARE OK is followed
// by parameter and column definitions: not when MySQL's optional metadata is
// negotiated and the OK's metadata_follows byte is RESULTSET_METADATA_NONE.
func (s *Session) prepareMetadataFollows(ok []byte) bool {
	if s.backendCap&mysql.ClientOptionalResultsetMetadata == 0 || len(ok) < 13 {
		return true
	}
	return ok[12] != 0
}
