package backend

import (
	"encoding/binary"
	"fmt"

	"github.com/switchyard-db/switchyard/pkg/mysql"
)

// changeUser forwards COM_CHANGE_USER. The client scrambled its password
// with the proxy's salt, which the backend never saw, so the plugin name is
// replaced with an unknown one: the backend then sends an AuthSwitchRequest
// with a fresh scramble and the client answers it directly, as during the
// initial handshake.
func (s *Session) changeUser(pk mysql.Packet) error {
	if !pk.Complete {
		if err := s.client.DiscardCurrent(); err != nil {
			return err
		}
		return s.replyError(mysql.NewError(mysql.ErNetPacketTooLarge, "COM_CHANGE_USER packet too large"))
	}
	data := append([]byte(nil), pk.Data...)
	if err := s.client.DiscardCurrent(); err != nil {
		return err
	}
	req, err := parseChangeUser(data, s.clientCap)
	if err != nil {
		return s.replyError(mysql.NewError(mysql.ErHandshakeError, "Bad handshake: %v", err))
	}
	user, err := s.router.MapUser(s.lease.Cluster(), string(req.user))
	if err != nil {
		return s.replyError(&mysql.MySQLError{Code: mysql.ErAccessDenied, State: "28000", Message: "Switchyard: " + err.Error()})
	}
	req.user = []byte(user)
	if err := s.sendBackend(req.encode(s.backendCap, s.charset)); err != nil {
		return err
	}
	ok, err := s.relayAuth(false)
	if err != nil {
		return err
	}
	if ok {
		s.state.resetSession()
		s.state.user, s.state.db = string(req.user), string(req.db)
		s.publishBackendIdent()
		return s.afterReset()
	}
	return nil
}

// parseChangeUser splits a COM_CHANGE_USER payload.
type changeUserReq struct {
	user, auth, db []byte
	charset        []byte // 2 bytes, or nil
	attrs          []byte // raw attrs block with its length prefix, or nil
}

func parseChangeUser(data []byte, capability uint32) (*changeUserReq, error) {
	r := &changeUserReq{}
	pos := 1
	user, n, ok := mysql.ReadNulString(data[pos:])
	if !ok {
		return nil, fmt.Errorf("%w: COM_CHANGE_USER user", mysql.ErrMalformed)
	}
	r.user = user
	pos += n
	if capability&mysql.ClientSecureConnection != 0 {
		if pos >= len(data) || pos+1+int(data[pos]) > len(data) {
			return nil, fmt.Errorf("%w: COM_CHANGE_USER auth data", mysql.ErrMalformed)
		}
		r.auth = data[pos+1 : pos+1+int(data[pos])]
		pos += 1 + int(data[pos])
	} else {
		auth, n, ok := mysql.ReadNulString(data[pos:])
		if !ok {
			return nil, fmt.Errorf("%w: COM_CHANGE_USER auth data", mysql.ErrMalformed)
		}
		r.auth = auth
		pos += n
	}
	if pos < len(data) {
		db, n, ok := mysql.ReadNulString(data[pos:])
		if !ok {
			return nil, fmt.Errorf("%w: COM_CHANGE_USER database", mysql.ErrMalformed)
		}
		r.db = db
		pos += n
	}
	if pos+2 <= len(data) {
		r.charset = data[pos : pos+2]
		pos += 2
	}
	if capability&mysql.ClientPluginAuth != 0 && pos < len(data) {
		_, n, ok := mysql.ReadNulString(data[pos:])
		if !ok {
			n = len(data) - pos
		}
		pos += n
	}
	if capability&mysql.ClientConnectAttrs != 0 && pos < len(data) {
		r.attrs = data[pos:]
	}
	return r, nil
}

func (r *changeUserReq) encode(capability uint32, charset byte) []byte {
	b := []byte{mysql.ComChangeUser}
	b = append(b, r.user...)
	b = append(b, 0)
	b = append(b, byte(len(r.auth)))
	b = append(b, r.auth...)
	b = append(b, r.db...)
	b = append(b, 0)
	if r.charset != nil {
		b = append(b, r.charset...)
	} else {
		b = binary.LittleEndian.AppendUint16(b, uint16(charset))
	}
	b = append(b, mysql.AuthUnknownPlugin...)
	b = append(b, 0)
	if capability&mysql.ClientConnectAttrs != 0 && r.attrs != nil {
		b = append(b, r.attrs...)
	}
	return b
}
