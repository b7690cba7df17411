package e2e

import (
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/pkg/mysql"
)

// rawClient speaks the protocol by hand for what go-sql-driver never sends:
// cursors, COM_CHANGE_USER, and the pre-DEPRECATE_EOF result format.
type rawClient struct {
	t    *testing.T
	io   *mysql.PacketIO
	caps uint32
	salt []byte
	// hs is the greeting the client got (mysql_thread_id() is its ConnID).
	hs *mysql.InitialHandshake
}

const rawCaps = mysql.ClientProtocol41 | mysql.ClientSecureConnection | mysql.ClientPluginAuth |
	mysql.ClientLongPassword | mysql.ClientTransactions | mysql.ClientMultiResults |
	mysql.ClientConnectWithDB | mysql.ClientPluginAuthLenencClientData

func nativeScramble(salt []byte, password string) []byte {
	if password == "" {
		return nil
	}
	h1 := sha1.Sum([]byte(password))
	h2 := sha1.Sum(h1[:])
	h := sha1.New()
	h.Write(salt)
	h.Write(h2[:])
	h3 := h.Sum(nil)
	for i := range h3 {
		h3[i] ^= h1[i]
	}
	return h3
}

// dialRaw logs in with mysql_native_password, following auth switches.
func dialRaw(t *testing.T, addr, user, password, db string) (*rawClient, error) {
	return dialRawCompressed(t, addr, user, password, db, mysql.CompressNone)
}

// dialRawCompressed is dialRaw that also negotiates compression.
func dialRawCompressed(t *testing.T, addr, user, password, db string, algo mysql.CompressAlgorithm) (*rawClient, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	c := &rawClient{t: t, io: mysql.NewPacketIO(conn), caps: rawCaps}
	t.Cleanup(func() { _ = c.io.Close() })
	data, err := c.io.ReadPacket(0)
	if err != nil {
		return nil, err
	}
	hs, err := mysql.ParseInitialHandshake(data)
	if err != nil {
		return nil, err
	}
	c.salt, c.hs = hs.Salt, hs
	switch algo {
	case mysql.CompressZlib:
		c.caps |= mysql.ClientCompress
	case mysql.CompressZstd:
		c.caps |= mysql.ClientZstdCompression
	}
	// CLIENT_LONG_PASSWORD is CLIENT_MYSQL, which MariaDB servers (and the
	// proxy greeting like them) clear to announce their extended word.
	if need := c.caps &^ mysql.ClientLongPassword; need&hs.Capability != need {
		return nil, fmt.Errorf("server lacks capabilities 0x%x", need&^hs.Capability)
	}
	resp := &mysql.HandshakeResponse{Capability: c.caps, MaxPacket: 1 << 24, Charset: 45,
		User: user, AuthData: nativeScramble(hs.Salt, password), DB: db, AuthPlugin: mysql.AuthNativePassword,
		ZstdLevel: 3}
	if err := c.io.WritePacket(mysql.AppendHandshakeResponse(nil, resp)); err != nil {
		return nil, err
	}
	if err := c.io.Flush(); err != nil {
		return nil, err
	}
	if err := c.finishAuth(password); err != nil {
		return nil, err
	}
	return c, c.io.SetCompression(algo, 3)
}

// finishAuth answers auth switches until OK or ERR.
func (c *rawClient) finishAuth(password string) error {
	for {
		data, err := c.io.ReadPacket(0)
		if err != nil {
			return err
		}
		switch data[0] {
		case mysql.OKHeader:
			return nil
		case mysql.ErrHeader:
			return mysql.ParseErr(data)
		case mysql.AuthSwitchHeader:
			req, err := mysql.ParseAuthSwitchRequest(data)
			if err != nil {
				return err
			}
			if req.Plugin != mysql.AuthNativePassword {
				return fmt.Errorf("raw client only speaks mysql_native_password, asked for %s", req.Plugin)
			}
			c.salt = req.Data
			if err := c.io.WritePacket(nativeScramble(req.Data, password)); err != nil {
				return err
			}
			if err := c.io.Flush(); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unexpected auth packet 0x%02x", data[0])
		}
	}
}

func (c *rawClient) send(payload []byte) {
	c.t.Helper()
	c.io.ResetSequence()
	require.NoError(c.t, c.io.WritePacket(payload))
	require.NoError(c.t, c.io.Flush())
}

func (c *rawClient) read() []byte {
	c.t.Helper()
	data, err := c.io.ReadPacket(0)
	require.NoError(c.t, err)
	return data
}

// eofStatus reads an EOF packet (this client does not use DEPRECATE_EOF).
func (c *rawClient) eofStatus() uint16 {
	c.t.Helper()
	data := c.read()
	require.Equal(c.t, mysql.EOFHeader, data[0], "expected EOF, got % x", data)
	st, err := mysql.ParseEOFStatus(data, false, false)
	require.NoError(c.t, err)
	return st
}

// query runs a text query and returns its rows as strings (NULL as "NULL").
func (c *rawClient) query(q string) [][]string {
	c.t.Helper()
	c.send(append([]byte{mysql.ComQuery}, q...))
	data := c.read()
	switch data[0] {
	case mysql.OKHeader:
		return nil
	case mysql.ErrHeader:
		c.t.Fatalf("query %q: %v", q, mysql.ParseErr(data))
	}
	cols, _, _, _ := mysql.ReadLenEncInt(data)
	for i := uint64(0); i < cols; i++ {
		c.read()
	}
	c.eofStatus()
	var rows [][]string
	for {
		data := c.read()
		if data[0] == mysql.EOFHeader && len(data) < 9 {
			return rows
		}
		require.NotEqual(c.t, mysql.ErrHeader, data[0], "error in rows: %v", mysql.ParseErr(data))
		var row []string
		for pos := 0; pos < len(data); {
			if data[pos] == 0xfb {
				row = append(row, "NULL")
				pos++
				continue
			}
			s, n, ok := mysql.ReadLenEncString(data[pos:])
			require.True(c.t, ok)
			row = append(row, string(s))
			pos += n
		}
		rows = append(rows, row)
	}
}

// prepare returns the statement id and its column count.
func (c *rawClient) prepare(q string) (uint32, int) {
	c.t.Helper()
	c.send(append([]byte{mysql.ComStmtPrepare}, q...))
	data := c.read()
	require.Equal(c.t, mysql.OKHeader, data[0], "prepare failed: %v", mysql.ParseErr(data))
	id := binary.LittleEndian.Uint32(data[1:])
	cols := int(binary.LittleEndian.Uint16(data[5:]))
	params := int(binary.LittleEndian.Uint16(data[7:]))
	require.Zero(c.t, params, "raw client supports statements without parameters")
	for i := 0; i < cols; i++ {
		c.read()
	}
	if cols > 0 {
		c.eofStatus()
	}
	return id, cols
}

// executeCursor opens a read-only cursor and returns the EOF status.
func (c *rawClient) executeCursor(id uint32, cols int) uint16 {
	c.t.Helper()
	p := []byte{mysql.ComStmtExecute}
	p = binary.LittleEndian.AppendUint32(p, id)
	p = append(p, 0x01) // CURSOR_TYPE_READ_ONLY
	p = binary.LittleEndian.AppendUint32(p, 1)
	c.send(p)
	data := c.read()
	require.NotEqual(c.t, mysql.ErrHeader, data[0], "execute failed: %v", mysql.ParseErr(data))
	n, _, _, _ := mysql.ReadLenEncInt(data)
	require.Equal(c.t, uint64(cols), n)
	for i := 0; i < cols; i++ {
		c.read()
	}
	return c.eofStatus()
}

// fetch asks for up to n rows; it returns how many came and the status.
func (c *rawClient) fetch(id uint32, n uint32) (int, uint16) {
	c.t.Helper()
	p := []byte{mysql.ComStmtFetch}
	p = binary.LittleEndian.AppendUint32(p, id)
	p = binary.LittleEndian.AppendUint32(p, n)
	c.send(p)
	rows := 0
	for {
		data := c.read()
		if data[0] == mysql.EOFHeader && len(data) < 9 {
			st, err := mysql.ParseEOFStatus(data, false, false)
			require.NoError(c.t, err)
			return rows, st
		}
		require.NotEqual(c.t, mysql.ErrHeader, data[0], "fetch failed: %v", mysql.ParseErr(data))
		rows++
	}
}

// changeUser sends COM_CHANGE_USER scrambled with the salt of the initial
// handshake, as real clients do, and answers auth switches.
func (c *rawClient) changeUser(user, password, db string) error {
	p := []byte{mysql.ComChangeUser}
	p = append(p, user...)
	p = append(p, 0)
	auth := nativeScramble(c.salt, password)
	p = append(p, byte(len(auth)))
	p = append(p, auth...)
	p = append(p, db...)
	p = append(p, 0)
	p = append(p, 45, 0)
	p = append(p, mysql.AuthNativePassword...)
	p = append(p, 0)
	c.io.ResetSequence()
	if err := c.io.WritePacket(p); err != nil {
		return err
	}
	if err := c.io.Flush(); err != nil {
		return err
	}
	return c.finishAuth(password)
}
