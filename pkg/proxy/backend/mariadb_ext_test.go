package backend

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	pmysql "github.com/switchyard-db/switchyard/pkg/mysql"
)

// fakeMariaDB is a backend that greets like MariaDB 10.11 (extended
// capabilities announced), lets anyone in, and answers each command with the
// packets script returns for it. It records the commands it received.
type fakeMariaDB struct {
	ln       net.Listener
	script   func(cmd []byte) [][]byte
	commands chan []byte
	ext      chan uint32
}

func startFakeMariaDB(t *testing.T, script func(cmd []byte) [][]byte) *fakeMariaDB {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f := &fakeMariaDB{ln: ln, script: script, commands: make(chan []byte, 16), ext: make(chan uint32, 1)}
	done := make(chan struct{})
	t.Cleanup(func() { _ = ln.Close(); <-done })
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		f.serve(conn)
	}()
	return f
}

func (f *fakeMariaDB) serve(conn net.Conn) {
	pio := pmysql.NewPacketIO(conn)
	defer pio.Release()
	_ = pio.WritePacket(pmysql.AppendInitialHandshake(nil, &pmysql.InitialHandshake{
		ServerVersion: mariaInfo.Version, ConnID: 42, Salt: pmysql.NewSalt(20),
		Capability: mariaInfo.Capability, ExtCapability: mariaExt, Charset: 8,
		Status: pmysql.ServerStatusAutocommit, AuthPlugin: pmysql.AuthNativePassword,
	}))
	_ = pio.Flush()
	data, err := pio.ReadPacket(0)
	if err != nil {
		return
	}
	resp, err := pmysql.ParseHandshakeResponse(data)
	if err != nil {
		return
	}
	f.ext <- resp.ExtCapability
	// The proxy names an unknown plugin: switch, and accept any answer.
	_ = pio.WritePacket(append(append([]byte{pmysql.AuthSwitchHeader}, pmysql.AuthNativePassword+"\x00"...), pmysql.NewSalt(20)...))
	_ = pio.Flush()
	if _, err := pio.ReadPacket(0); err != nil {
		return
	}
	_ = pio.WritePacket(pmysql.AppendOK(nil, pmysql.OKHeader, pmysql.OKInfo{Status: pmysql.ServerStatusAutocommit}, false))
	_ = pio.Flush()
	for {
		pio.ResetSequence()
		cmd, err := pio.ReadPacket(0)
		if err != nil || len(cmd) == 0 || cmd[0] == pmysql.ComQuit {
			return
		}
		f.commands <- append([]byte(nil), cmd...)
		for _, p := range f.script(cmd) {
			_ = pio.WritePacket(p)
		}
		_ = pio.Flush()
	}
}

func okEOF(status uint16) []byte {
	return pmysql.AppendOK(nil, pmysql.EOFHeader, pmysql.OKInfo{Status: status}, false)
}

// TestMariaDBExtensionsForwarded: progress reports reach the client before
// the answer, bulk executions are forwarded (a malformed one is refused
// without reaching the backend), and result sets without metadata (metadata
// caching) are followed, the session staying in step.
func TestMariaDBExtensionsForwarded(t *testing.T) {
	progress := pmysql.AppendProgress(nil, pmysql.Progress{Stage: 1, MaxStage: 3, Permille: 50000, Info: "copy to tmp table"})
	fake := startFakeMariaDB(t, func(cmd []byte) [][]byte {
		switch cmd[0] {
		case pmysql.ComQuery:
			switch string(cmd[1:]) {
			case "ALTER TABLE t ADD KEY (a)":
				return [][]byte{progress, progress, pmysql.AppendOK(nil, pmysql.OKHeader, pmysql.OKInfo{Status: pmysql.ServerStatusAutocommit | pmysql.ServerStatusInTrans}, false)}
			}
		case pmysql.ComStmtPrepare:
			ok := []byte{pmysql.OKHeader, 7, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0}
			return [][]byte{ok, []byte("param1"), []byte("param2"), []byte("column1")}
		case pmysql.ComStmtExecute:
			// Cached metadata: column count, "no metadata", then a binary
			// row, or none (statement 8).
			if cmd[1] == 8 {
				return [][]byte{{1, 0}, okEOF(pmysql.ServerStatusAutocommit)}
			}
			return [][]byte{{1, 0}, {0, 0, 1, 'x'}, okEOF(pmysql.ServerStatusAutocommit)}
		case pmysql.ComStmtBulkExecute:
			return [][]byte{pmysql.AppendOK(nil, pmysql.OKHeader, pmysql.OKInfo{AffectedRows: 2, Status: pmysql.ServerStatusAutocommit}, false)}
		}
		return [][]byte{pmysql.AppendOK(nil, pmysql.OKHeader, pmysql.OKInfo{Status: pmysql.ServerStatusAutocommit}, false)}
	})
	cfg := baseConfig()
	cfg.Greeting = fixedGreeting{mariaInfo}
	p := startProxy(t, cfg, fake.ln.Addr().String())
	rc := dialRaw(t, p.Addr())
	rc.write(mariaResponse(mariaExt, "anyone"))
	sw := rc.read()
	require.Equal(t, pmysql.AuthSwitchHeader, sw[0])
	rc.write(make([]byte, 20))
	require.Equal(t, pmysql.OKHeader, rc.read()[0])
	require.Equal(t, mariaExt, <-fake.ext, "every extension the client chose is asked of the backend")

	cmd := func(b []byte) {
		rc.pio.ResetSequence()
		rc.write(b)
	}
	// Progress reports, then the answer; the session follows the answer's
	// transaction flag, not the reports.
	cmd(append([]byte{pmysql.ComQuery}, "ALTER TABLE t ADD KEY (a)"...))
	require.Equal(t, progress, rc.read())
	require.Equal(t, progress, rc.read())
	require.Equal(t, pmysql.OKHeader, rc.read()[0])
	<-fake.commands
	require.Eventually(t, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for s := range p.sessions {
			return s.Info().InTransaction
		}
		return false
	}, 5*time.Second, 10*time.Millisecond, "the answer's transaction flag is tracked past the progress reports")

	cmd(append([]byte{pmysql.ComStmtPrepare}, "INSERT INTO t VALUES (?, ?)"...))
	for range 4 {
		rc.read()
	}
	<-fake.commands

	// A bulk execution: two rows of two parameters, types sent.
	bulk := binary.LittleEndian.AppendUint32([]byte{pmysql.ComStmtBulkExecute}, 7)
	bulk = binary.LittleEndian.AppendUint16(bulk, pmysql.BulkSendTypes)
	bulk = append(bulk, pmysql.TypeLong, 0, pmysql.TypeVarString, 0)
	bulk = append(bulk, 0, 1, 0, 0, 0, 0, 1, 'a', 1, 2)
	cmd(bulk)
	ok, err := pmysql.ParseOK(rc.read(), false)
	require.NoError(t, err)
	require.Equal(t, uint64(2), ok.AffectedRows)
	require.Equal(t, bulk, <-fake.commands, "forwarded as sent")

	// A malformed one (its second row is cut short) never reaches the backend.
	cmd(bulk[:len(bulk)-1])
	e := rc.readErr(1)
	require.Equal(t, pmysql.ErMalformedPacket, e.Code)
	require.Contains(t, e.Message, "COM_STMT_BULK_EXECUTE")

	// A result set without metadata: the row follows the column count.
	exec := binary.LittleEndian.AppendUint32([]byte{pmysql.ComStmtExecute}, 7)
	exec = append(exec, 0, 1, 0, 0, 0)
	cmd(exec)
	require.Equal(t, []byte{1, 0}, rc.read())
	require.Equal(t, []byte{0, 0, 1, 'x'}, rc.read())
	require.Equal(t, pmysql.EOFHeader, rc.read()[0])
	<-fake.commands
	// No row: a proxy expecting column definitions would wait for one.
	exec[1] = 8
	cmd(exec)
	require.Equal(t, []byte{1, 0}, rc.read())
	require.Equal(t, pmysql.EOFHeader, rc.read()[0])
	<-fake.commands
	cmd([]byte{pmysql.ComPing})
	require.Equal(t, pmysql.OKHeader, rc.read()[0], "still in step")
	require.Equal(t, []byte{pmysql.ComPing}, <-fake.commands, "the malformed bulk never reached the backend")
}
