package backend

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
	pmysql "github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/observer"
	"github.com/switchyard-db/switchyard/test/mysqldouble"
)

// fixedGreeting is a GreetingSource that always answers the same.
type fixedGreeting struct{ info *observer.ServerInfo }

func (g fixedGreeting) ServerInfo(netip.AddrPort, netip.AddrPort) *observer.ServerInfo { return g.info }

const mariaExt = pmysql.MariaDBClientProgress | pmysql.MariaDBClientStmtBulkOperations |
	pmysql.MariaDBClientExtendedMetadata | pmysql.MariaDBClientCacheMetadata

// mariaInfo is what the prober records of MariaDB 10.11 (hsTestMariaDBGreeting).
var mariaInfo = &observer.ServerInfo{Version: "5.5.5-10.11.19-MariaDB-0+deb12u1", Capability: 0x81fff7fe, ExtCapability: mariaExt | pmysql.MariaDBClientComMulti, Charset: 8}

func TestGreetingFromBackends(t *testing.T) {
	dbl := startBackend(t)
	t.Run("nothing probed: the fixed set", func(t *testing.T) {
		cfg := baseConfig()
		cfg.ServerVersion = ""
		cfg.Greeting = fixedGreeting{}
		rc := dialRaw(t, startProxy(t, cfg, dbl.Addr()).Addr())
		require.Equal(t, DefaultServerVersion, rc.greeting.ServerVersion)
		require.Equal(t, fixedCapability, rc.greeting.Capability)
		require.Equal(t, byte(pmysql.DefaultCharset), rc.greeting.Charset)
		require.Zero(t, rc.greeting.ExtCapability)
	})
	t.Run("a MariaDB cluster", func(t *testing.T) {
		cfg := baseConfig()
		cfg.ServerVersion = ""
		cfg.Greeting = fixedGreeting{mariaInfo}
		rc := dialRaw(t, startProxy(t, cfg, dbl.Addr()).Addr())
		require.Equal(t, mariaInfo.Version, rc.greeting.ServerVersion)
		require.Equal(t, byte(8), rc.greeting.Charset, "the backends' default collation")
		require.Zero(t, rc.greeting.Capability&pmysql.ClientMySQL, "CLIENT_MYSQL clear: MariaDB's extended word follows")
		require.Equal(t, mariaExt, rc.greeting.ExtCapability, "COM_MULTI is not forwarded")
		require.Zero(t, rc.greeting.Capability&pmysql.ClientSSL, "no TLS configured on the proxy")
		require.NotZero(t, rc.greeting.Capability&pmysql.ClientZstdCompression, "the proxy compresses on its own")
	})
	t.Run("server-version overrides", func(t *testing.T) {
		cfg := baseConfig()
		cfg.Greeting = fixedGreeting{mariaInfo}
		rc := dialRaw(t, startProxy(t, cfg, dbl.Addr()).Addr())
		require.Equal(t, "8.0.36-switchyard-test", rc.greeting.ServerVersion)
		require.Equal(t, mariaExt, rc.greeting.ExtCapability)
	})
}

// mariaResponse is a raw client's login answer with MariaDB's extended word.
func mariaResponse(ext uint32, user string) []byte {
	return pmysql.AppendHandshakeResponse(nil, &pmysql.HandshakeResponse{
		Capability: rawCaps &^ pmysql.ClientMySQL, MaxPacket: 1 << 24, Charset: 8,
		User: user, AuthData: make([]byte, 20), AuthPlugin: pmysql.AuthNativePassword, ExtCapability: ext,
	})
}

// TestExtendedCapabilitiesNegotiatedPerSide: the backend is asked for what
// the client chose and it offers; a backend offering less than the client
// chose (it differs from its cluster) is not used for that client.
func TestExtendedCapabilitiesNegotiatedPerSide(t *testing.T) {
	t.Run("the backend has them", func(t *testing.T) {
		dbl := mysqldouble.Start(t, mysqldouble.Config{NativeUsers: nativeUsers, MariaDBExt: mariaExt})
		cfg := baseConfig()
		cfg.Greeting = fixedGreeting{mariaInfo}
		rc := dialRaw(t, startProxy(t, cfg, dbl.Addr()).Addr())
		rc.write(mariaResponse(pmysql.MariaDBClientStmtBulkOperations|pmysql.MariaDBClientProgress|pmysql.MariaDBClientComMulti, "nate"))
		sw, err := pmysql.ParseAuthSwitchRequest(rc.read())
		require.NoError(t, err)
		rc.write(nativeToken("n4tive", sw.Data))
		require.Equal(t, pmysql.OKHeader, rc.read()[0])
		got := dbl.LastNegotiated()
		require.Zero(t, got.Capability&pmysql.ClientMySQL)
		require.Equal(t, pmysql.MariaDBClientStmtBulkOperations|pmysql.MariaDBClientProgress, got.MariaDBExt,
			"what the client chose, minus what the proxy did not offer")
	})
	t.Run("the backend lacks them", func(t *testing.T) {
		dbl := mysqldouble.Start(t, mysqldouble.Config{NativeUsers: nativeUsers})
		cfg := baseConfig()
		cfg.Greeting = fixedGreeting{mariaInfo}
		rc := dialRaw(t, startProxy(t, cfg, dbl.Addr()).Addr())
		rc.write(mariaResponse(pmysql.MariaDBClientStmtBulkOperations, "nate"))
		e := rc.readErr(2)
		require.Contains(t, e.Message, "lacks protocol capabilities the client chose")
		require.Nil(t, dbl.LastNegotiated(), "no login was sent to that backend")
	})
	t.Run("progress alone is not required", func(t *testing.T) {
		dbl := mysqldouble.Start(t, mysqldouble.Config{NativeUsers: nativeUsers})
		cfg := baseConfig()
		cfg.Greeting = fixedGreeting{mariaInfo}
		rc := dialRaw(t, startProxy(t, cfg, dbl.Addr()).Addr())
		rc.write(mariaResponse(pmysql.MariaDBClientProgress, "nate"))
		sw, err := pmysql.ParseAuthSwitchRequest(rc.read())
		require.NoError(t, err)
		rc.write(nativeToken("n4tive", sw.Data))
		require.Equal(t, pmysql.OKHeader, rc.read()[0])
		require.Zero(t, dbl.LastNegotiated().MariaDBExt, "a MySQL backend gets no extended word")
	})
}

// mysql8Info is what the prober records of a MySQL 8 backend (the double).
var mysql8Info = &observer.ServerInfo{Version: "8.0.36-double",
	Capability: fixedCapability | pmysql.ClientQueryAttributes | pmysql.ClientOptionalResultsetMetadata, Charset: 255}

// TestMySQL8Extensions: query attributes reach the backend, and results
// without metadata (resultset_metadata=NONE) are followed, so the session
// stays in step. Against the MySQL 8 double: MySQL 8 is not installable here.
func TestMySQL8Extensions(t *testing.T) {
	dbl := mysqldouble.Start(t, mysqldouble.Config{NativeUsers: nativeUsers, MySQL8Extensions: true})
	cfg := baseConfig()
	cfg.Greeting = fixedGreeting{mysql8Info}
	rc := dialRaw(t, startProxy(t, cfg, dbl.Addr()).Addr())
	caps := rawCaps | pmysql.ClientQueryAttributes | pmysql.ClientOptionalResultsetMetadata
	require.Equal(t, caps, rc.greeting.Capability&caps, "offered: the backends have them")
	rc.write(handshakeResponse(caps, "nate", pmysql.AuthNativePassword))
	sw, err := pmysql.ParseAuthSwitchRequest(rc.read())
	require.NoError(t, err)
	rc.write(nativeToken("n4tive", sw.Data))
	require.Equal(t, pmysql.OKHeader, rc.read()[0])
	require.Equal(t, caps, dbl.LastNegotiated().Capability&caps)

	query := func(attrs []byte, q string) {
		rc.pio.ResetSequence()
		rc.write(append(append([]byte{pmysql.ComQuery}, attrs...), q...))
	}
	noAttrs := []byte{0, 1}
	oneAttr := []byte{1, 1, 0, 1, pmysql.TypeVarString, 0, 5, 't', 'r', 'a', 'c', 'e', 3, 'a', 'b', 'c'}
	readValue := func(metadata bool) string {
		cc := rc.read()
		if metadata {
			require.Equal(t, []byte{1, 1}, cc, "column count, metadata follows")
			rc.read() // the column definition
		} else {
			require.Equal(t, []byte{1, 0}, cc, "column count, no metadata")
		}
		row := rc.read()
		end := rc.read()
		require.Equal(t, pmysql.EOFHeader, end[0])
		v, _, _ := pmysql.ReadLenEncString(row)
		return string(v)
	}
	query(oneAttr, "SELECT mysql_query_attribute_string('trace')")
	require.Equal(t, "abc", readValue(true))
	query(oneAttr, "KILL QUERY 1") // an id the proxy never gave out
	e := rc.readErr(1)
	require.Equal(t, pmysql.ErNoSuchThread, e.Code, "the KILL was found behind the attributes")

	query(noAttrs, "SET resultset_metadata = NONE")
	ok := rc.read()
	require.Equal(t, pmysql.OKHeader, ok[0])
	query(noAttrs, "SELECT 'x'")
	require.Equal(t, "x", readValue(false))
	// No metadata and no row: the column count is followed by the end of
	// the result at once; a proxy expecting a column definition would wait.
	query(noAttrs, "SELECT 'x' LIMIT 0")
	require.Equal(t, []byte{1, 0}, rc.read())
	require.Equal(t, pmysql.EOFHeader, rc.read()[0])
	query(oneAttr, "SELECT mysql_query_attribute_string('trace')")
	require.Equal(t, "abc", readValue(false), "still in step after a result without metadata")
	query(noAttrs, "SET resultset_metadata = FULL")
	require.Equal(t, pmysql.OKHeader, rc.read()[0])
	query(noAttrs, "SELECT 'y'")
	require.Equal(t, "y", readValue(true))

	// COM_STMT_EXECUTE carries attributes as parameters beyond the
	// statement's, announced by PARAMETER_COUNT_AVAILABLE (0x08).
	prepare := func() uint32 {
		rc.pio.ResetSequence()
		rc.write(append([]byte{pmysql.ComStmtPrepare}, "SELECT mysql_query_attribute_string('trace')"...))
		ok := rc.read()
		require.Equal(t, pmysql.OKHeader, ok[0], "prepare: %q", ok)
		if ok[12] == 1 {
			rc.read() // the column definition
		}
		return binary.LittleEndian.Uint32(ok[1:])
	}
	execute := func(id uint32, metadata bool) string {
		req := binary.LittleEndian.AppendUint32([]byte{pmysql.ComStmtExecute}, id)
		req = append(req, 0x08, 1, 0, 0, 0)
		req = append(req, oneAttr[0]) // attribute count
		req = append(req, oneAttr[2:]...)
		rc.pio.ResetSequence()
		rc.write(req)
		cc := rc.read()
		if metadata {
			require.Equal(t, []byte{1, 1}, cc)
			rc.read()
		} else {
			require.Equal(t, []byte{1, 0}, cc)
		}
		row := rc.read()
		require.Equal(t, []byte{0, 0}, row[:2], "binary row, no NULL")
		require.Equal(t, pmysql.EOFHeader, rc.read()[0])
		v, _, _ := pmysql.ReadLenEncString(row[2:])
		return string(v)
	}
	id := prepare()
	require.Equal(t, "abc", execute(id, true))
	query(noAttrs, "SET resultset_metadata = NONE")
	require.Equal(t, pmysql.OKHeader, rc.read()[0])
	// A prepare answered without parameter or column definitions.
	id2 := prepare()
	require.Equal(t, "abc", execute(id2, false))
	require.Equal(t, "abc", execute(id, false))
	rc.pio.ResetSequence()
	rc.write([]byte{pmysql.ComPing})
	require.Equal(t, pmysql.OKHeader, rc.read()[0], "still in step")
}
