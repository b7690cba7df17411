package e2e

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// TestRawCommands sends the commands drivers rarely use, one by one, and
// checks each response and that the session stays in step afterwards.
func TestRawCommands(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	p := proxyFor(t, m)
	c, err := dialRaw(t, p.Addr, testenv.NativeUser, testenv.NativePassword, testenv.TestDatabase)
	require.NoError(t, err)
	c.query("CREATE TABLE IF NOT EXISTS fl_t (a INT, b VARCHAR(10))")

	t.Run("COM_PING", func(t *testing.T) {
		c.send([]byte{mysql.ComPing})
		require.Equal(t, mysql.OKHeader, c.read()[0])
	})
	t.Run("COM_INIT_DB", func(t *testing.T) {
		c.send(append([]byte{mysql.ComInitDB}, "mysql"...))
		require.Equal(t, mysql.OKHeader, c.read()[0])
		require.Equal(t, [][]string{{"mysql"}}, c.query("SELECT DATABASE()"))
		c.send(append([]byte{mysql.ComInitDB}, "no_such_db"...))
		data := c.read()
		require.Equal(t, mysql.ErrHeader, data[0])
		require.Equal(t, uint16(1049), mysql.ParseErr(data).Code)
		c.send(append([]byte{mysql.ComInitDB}, testenv.TestDatabase...))
		require.Equal(t, mysql.OKHeader, c.read()[0])
	})
	t.Run("COM_FIELD_LIST", func(t *testing.T) {
		c.send(append([]byte{mysql.ComFieldList}, "fl_t\x00"...))
		n := 0
		for {
			data := c.read()
			if data[0] == mysql.EOFHeader && len(data) < 9 {
				break
			}
			require.NotEqual(t, mysql.ErrHeader, data[0], "%v", mysql.ParseErr(data))
			n++
		}
		require.Equal(t, 2, n, "two column definitions")
	})
	t.Run("COM_STATISTICS", func(t *testing.T) {
		c.send([]byte{mysql.ComStatistics})
		require.Contains(t, string(c.read()), "Uptime")
	})
	t.Run("COM_SET_OPTION enables multi-statements", func(t *testing.T) {
		c.send([]byte{mysql.ComSetOption, 0, 0})
		data := c.read()
		require.NotEqual(t, mysql.ErrHeader, data[0], "%v", mysql.ParseErr(data))
		// Two statements in one query: two result sets.
		c.send(append([]byte{mysql.ComQuery}, "SELECT 1; SELECT 2"...))
		for want := 1; want <= 2; want++ {
			require.Equal(t, byte(1), c.read()[0], "column count")
			c.read() // column definition
			c.eofStatus()
			row := c.read()
			s, _, ok := mysql.ReadLenEncString(row)
			require.True(t, ok)
			require.Equal(t, []byte{byte('0' + want)}, s)
			st := c.eofStatus()
			require.Equal(t, want == 1, st&0x0008 != 0, "SERVER_MORE_RESULTS_EXISTS after the first result")
		}
		c.send([]byte{mysql.ComSetOption, 1, 0})
		require.NotEqual(t, mysql.ErrHeader, c.read()[0])
	})
	t.Run("COM_RESET_CONNECTION", func(t *testing.T) {
		c.query("SET @x = 42")
		c.send([]byte{mysql.ComResetConnection})
		require.Equal(t, mysql.OKHeader, c.read()[0])
		require.Equal(t, [][]string{{"NULL"}}, c.query("SELECT @x"))
	})
	t.Run("COM_STMT_RESET and COM_STMT_CLOSE", func(t *testing.T) {
		id, _ := c.prepare("SELECT 1")
		p := binary.LittleEndian.AppendUint32([]byte{mysql.ComStmtReset}, id)
		c.send(p)
		require.Equal(t, mysql.OKHeader, c.read()[0])
		c.send(binary.LittleEndian.AppendUint32([]byte{mysql.ComStmtClose}, id))
		// No response to COM_STMT_CLOSE; the next command still works.
		require.Equal(t, [][]string{{"ok"}}, c.query("SELECT 'ok'"))
	})
	t.Run("replication commands are refused", func(t *testing.T) {
		c.send([]byte{mysql.ComBinlogDump, 4, 0, 0, 0, 0, 0, 1, 0, 0, 0})
		data := c.read()
		require.Equal(t, mysql.ErrHeader, data[0])
		require.Equal(t, mysql.ErUnknownCom, mysql.ParseErr(data).Code)
		require.Equal(t, [][]string{{"still here"}}, c.query("SELECT 'still here'"))
	})
	t.Run("COM_QUIT closes", func(t *testing.T) {
		c.send([]byte{mysql.ComQuit})
		_, err := c.io.ReadPacket(0)
		require.Error(t, err)
	})
}
