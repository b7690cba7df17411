package backend

import (
	"github.com/switchyard-db/switchyard/pkg/mysql"
)

// bulkExecute forwards MariaDB's COM_STMT_BULK_EXECUTE (negotiated with
// MARIADB_CLIENT_STMT_BULK_OPERATIONS on both sides, see capabilities.go).
// Without the capability it is forwarded all the same and the backend
// answers as it would directly. A request that fits in one packet is
// checked first, so that a malformed
// one gets a clear error from the proxy; the answer is one OK, an ERR, or
// result sets (INSERT ... RETURNING, or one row per parameter set with
// MARIADB_CLIENT_BULK_UNIT_RESULTS), which forwardResults follows like a
// COM_STMT_EXECUTE's.
func (s *Session) bulkExecute(pk mysql.Packet) error {
	st := s.state.lookupStmt(pk.Data)
	if st != nil && pk.Complete && len(pk.Data) >= 7 &&
		mysqlBulkFlags(pk.Data)&mysql.BulkSendTypes != 0 {
		if _, err := mysql.ParseBulkExecute(pk.Data, int(st.params), nil); err != nil {
			if err := s.client.DiscardCurrent(); err != nil {
				return err
			}
			return s.replyError(mysql.NewError(mysql.ErMalformedPacket, "Switchyard: malformed COM_STMT_BULK_EXECUTE: %v", err))
		}
	}
	// A session that moved speaks to its backend with other statement ids.
	s.mig.ids.requestToBackend(s.client, pk)
	if err := s.forwardRequestAndFlush(); err != nil {
		return err
	}
	if st != nil {
		st.longData = false
	}
	_, err := s.forwardResults(mysql.ComStmtBulkExecute)
	return err
}

func mysqlBulkFlags(data []byte) uint16 { return uint16(data[5]) | uint16(data[6])<<8 }
