package mysql

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// pktTestStateBlock builds the session-state block of an OK packet the way
// MySQL sends it after `SET autocommit=0; USE shop`.
func pktTestStateBlock() []byte {
	var b []byte
	entry := func(typ byte, body []byte) {
		b = append(b, typ)
		b = AppendLenEncString(b, body)
	}
	var sysvar []byte
	sysvar = AppendLenEncString(sysvar, []byte("autocommit"))
	sysvar = AppendLenEncString(sysvar, []byte("OFF"))
	entry(SessionTrackSystemVariables, sysvar)
	entry(SessionTrackSchema, AppendLenEncString(nil, []byte("shop")))
	entry(SessionTrackStateChange, AppendLenEncString(nil, []byte("1")))
	return b
}

// pktTestNormOK makes nil and empty byte slices compare equal.
func pktTestNormOK(ok OKInfo) OKInfo {
	if len(ok.Info) == 0 {
		ok.Info = nil
	}
	if len(ok.SessionState) == 0 {
		ok.SessionState = nil
	}
	return ok
}

func TestLenEncInt(t *testing.T) {
	tests := []struct {
		v   uint64
		enc []byte
	}{
		{0, []byte{0}},
		{1, []byte{1}},
		{250, []byte{0xfa}},
		{251, []byte{0xfc, 0xfb, 0x00}},
		{0xFFFF, []byte{0xfc, 0xff, 0xff}},
		{0x10000, []byte{0xfd, 0x00, 0x00, 0x01}},
		{0xFFFFFF, []byte{0xfd, 0xff, 0xff, 0xff}},
		{0x1000000, []byte{0xfe, 0, 0, 0, 1, 0, 0, 0, 0}},
		{math.MaxUint64, []byte{0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
	}
	for _, tt := range tests {
		enc := AppendLenEncInt([]byte{0xaa}, tt.v)
		require.Equal(t, tt.enc, enc[1:], "encode %d", tt.v)
		require.Equal(t, byte(0xaa), enc[0], "AppendLenEncInt must append")

		v, isNull, n, ok := ReadLenEncInt(append(tt.enc, 0x42, 0x43))
		require.True(t, ok, "decode %d", tt.v)
		require.False(t, isNull)
		require.Equal(t, tt.v, v)
		require.Equal(t, len(tt.enc), n)

		for cut := range len(tt.enc) {
			_, _, n, ok := ReadLenEncInt(tt.enc[:cut])
			require.False(t, ok, "decode %d truncated to %d bytes", tt.v, cut)
			require.Zero(t, n)
		}
	}
}

func TestLenEncIntSpecialPrefixes(t *testing.T) {
	v, isNull, n, ok := ReadLenEncInt([]byte{0xfb, 0x01})
	require.True(t, ok)
	require.True(t, isNull)
	require.Zero(t, v)
	require.Equal(t, 1, n)

	// 0xff starts an ERR packet, never a length.
	_, _, _, ok = ReadLenEncInt([]byte{0xff, 0, 0, 0, 0, 0, 0, 0, 0})
	require.False(t, ok)

	// Non-minimal encodings are accepted on read.
	v, _, n, ok = ReadLenEncInt([]byte{0xfc, 0x05, 0x00})
	require.True(t, ok)
	require.Equal(t, uint64(5), v)
	require.Equal(t, 3, n)
}

func TestLenEncString(t *testing.T) {
	for _, size := range []int{0, 1, 250, 251, 0xFFFF, 0x10000} {
		s := bytes.Repeat([]byte{'x'}, size)
		enc := AppendLenEncString(nil, s)
		got, n, ok := ReadLenEncString(append(enc, 'y'))
		require.True(t, ok, "size %d", size)
		require.Equal(t, len(enc), n)
		require.True(t, bytes.Equal(s, got), "size %d", size)

		_, _, ok = ReadLenEncString(enc[:len(enc)-1])
		require.False(t, ok, "size %d truncated by one byte", size)
	}

	s, n, ok := ReadLenEncString([]byte{0xfb, 'a'})
	require.True(t, ok, "NULL is a valid string")
	require.Nil(t, s)
	require.Equal(t, 1, n)

	for _, in := range [][]byte{
		nil,
		{0x05, 'a', 'b'},
		{0xfc, 0x00},
		{0xff},
		// A length that does not fit an int must not overflow the bound check.
		{0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 'a'},
		{0xfe, 0, 0, 0, 0, 0, 0, 0, 0x80, 'a'},
	} {
		_, _, ok := ReadLenEncString(in)
		require.False(t, ok, "%x", in)
	}
}

func TestReadNulString(t *testing.T) {
	s, n, ok := ReadNulString([]byte("root\x00rest"))
	require.True(t, ok)
	require.Equal(t, "root", string(s))
	require.Equal(t, 5, n)

	s, n, ok = ReadNulString([]byte{0})
	require.True(t, ok)
	require.Empty(t, s)
	require.Equal(t, 1, n)

	_, _, ok = ReadNulString([]byte("root"))
	require.False(t, ok)
	_, _, ok = ReadNulString(nil)
	require.False(t, ok)
}

func TestOKRoundTrip(t *testing.T) {
	state := pktTestStateBlock()
	tests := []struct {
		name  string
		hdr   byte
		ok    OKInfo
		track bool
		wire  []byte // exact encoding, when checked
	}{
		{
			name: "minimal",
			hdr:  OKHeader,
			ok:   OKInfo{AffectedRows: 1, Status: ServerStatusAutocommit},
			wire: []byte{0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00},
		},
		{
			name:  "minimal with session tracking",
			hdr:   OKHeader,
			ok:    OKInfo{AffectedRows: 1, Status: ServerStatusAutocommit},
			track: true,
			wire:  []byte{0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00},
		},
		{
			name: "info without session tracking is the rest of the packet",
			hdr:  OKHeader,
			ok:   OKInfo{AffectedRows: 3, Status: ServerStatusAutocommit, Warnings: 1, Info: []byte("Rows matched: 3  Changed: 3  Warnings: 1")},
			wire: append([]byte{0x00, 0x03, 0x00, 0x02, 0x00, 0x01, 0x00}, "Rows matched: 3  Changed: 3  Warnings: 1"...),
		},
		{
			name:  "info with session tracking is length-encoded",
			hdr:   OKHeader,
			ok:    OKInfo{Status: ServerStatusInTrans, Info: []byte("hi")},
			track: true,
			wire:  []byte{0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 'h', 'i'},
		},
		{
			name:  "session state",
			hdr:   OKHeader,
			ok:    OKInfo{Status: ServerStatusAutocommit | ServerSessionStateChanged, SessionState: state},
			track: true,
			wire:  append(append([]byte{0x00, 0x00, 0x00, 0x02, 0x40, 0x00, 0x00, 0x00}, byte(len(state))), state...),
		},
		{
			name:  "info and session state",
			hdr:   OKHeader,
			ok:    OKInfo{AffectedRows: 7, LastInsertID: 1 << 20, Status: ServerSessionStateChanged | ServerStatusInTrans, Warnings: 2, Info: []byte("ok"), SessionState: state},
			track: true,
		},
		{
			name: "large integers",
			hdr:  OKHeader,
			ok:   OKInfo{AffectedRows: 0x1000000, LastInsertID: math.MaxUint64, Status: 0xffff &^ ServerSessionStateChanged, Warnings: 0xffff},
		},
		{
			name:  "deprecate-EOF terminator",
			hdr:   EOFHeader,
			ok:    OKInfo{Status: ServerStatusAutocommit | ServerMoreResultsExists},
			track: true,
			wire:  []byte{0xfe, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := AppendOK(nil, tt.hdr, tt.ok, tt.track)
			if tt.wire != nil {
				require.Equal(t, tt.wire, enc)
			}
			require.Equal(t, tt.hdr, enc[0])
			got, err := ParseOK(enc, tt.track)
			require.NoError(t, err)
			require.Equal(t, pktTestNormOK(tt.ok), pktTestNormOK(got))

			status, err := ParseEOFStatus(enc, true, tt.track)
			require.NoError(t, err)
			require.Equal(t, tt.ok.Status, status)
		})
	}
}

func TestOKWithoutSessionTrackDropsState(t *testing.T) {
	ok := OKInfo{Status: ServerStatusAutocommit | ServerSessionStateChanged, SessionState: pktTestStateBlock(), Info: []byte("x")}
	enc := AppendOK(nil, OKHeader, ok, false)
	got, err := ParseOK(enc, false)
	require.NoError(t, err)
	require.Equal(t, ServerStatusAutocommit, got.Status, "the flag must not be announced without CLIENT_SESSION_TRACK")
	require.Nil(t, got.SessionState)
	require.Equal(t, "x", string(got.Info))
}

func TestParseOKFromServers(t *testing.T) {
	// Pre-4.1 servers stop after the last insert id.
	got, err := ParseOK([]byte{0x00, 0x02, 0x05}, false)
	require.NoError(t, err)
	require.Equal(t, OKInfo{AffectedRows: 2, LastInsertID: 5}, got)

	// With session tracking negotiated, the info string may be absent.
	got, err = ParseOK([]byte{0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00}, true)
	require.NoError(t, err)
	require.Equal(t, ServerStatusAutocommit, got.Status)
	require.Empty(t, got.Info)

	// The state-changed flag without a state block.
	got, err = ParseOK([]byte{0x00, 0x00, 0x00, 0x02, 0x40, 0x00, 0x00, 0x00}, true)
	require.NoError(t, err)
	require.Empty(t, got.SessionState)

	// USE shop on MySQL 8 (schema entry only).
	wire := fuzzHex("0000000240000000" + "07" + "0105" + "0473686f70")
	got, err = ParseOK(wire, true)
	require.NoError(t, err)
	schema, found := SessionSchema(got.SessionState)
	require.True(t, found)
	require.Equal(t, "shop", schema)
}

func TestParseOKMalformed(t *testing.T) {
	for _, tt := range []struct {
		name  string
		data  []byte
		track bool
	}{
		{"empty", nil, false},
		{"truncated affected rows", []byte{0x00, 0xfc, 0x01}, false},
		{"ERR marker as affected rows", []byte{0x00, 0xff}, false},
		{"missing last insert id", []byte{0x00, 0x01}, false},
		{"truncated last insert id", []byte{0x00, 0x01, 0xfd, 0x01, 0x02}, false},
		{"info beyond end", []byte{0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x05, 'a'}, true},
		{"state beyond end", []byte{0x00, 0x00, 0x00, 0x02, 0x40, 0x00, 0x00, 0x00, 0x09, 0x01}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseOK(tt.data, tt.track)
			require.ErrorIs(t, err, ErrMalformed)
		})
	}
}

func TestSessionSchema(t *testing.T) {
	schema, found := SessionSchema(pktTestStateBlock())
	require.True(t, found)
	require.Equal(t, "shop", schema)

	var b []byte
	b = append(b, SessionTrackSchema)
	b = AppendLenEncString(b, AppendLenEncString(nil, []byte("first")))
	b = append(b, SessionTrackGTIDs)
	b = AppendLenEncString(b, []byte{0x00, 0x03, 'a', 'b', 'c'})
	b = append(b, SessionTrackSchema)
	b = AppendLenEncString(b, AppendLenEncString(nil, []byte("second")))
	schema, found = SessionSchema(b)
	require.True(t, found)
	require.Equal(t, "second", schema, "the last change wins")

	// An empty schema name is still a change (the session has no default
	// schema any more).
	schema, found = SessionSchema(append([]byte{SessionTrackSchema}, AppendLenEncString(nil, AppendLenEncString(nil, nil))...))
	require.True(t, found)
	require.Empty(t, schema)

	for _, tt := range []struct {
		name  string
		state []byte
	}{
		{"empty", nil},
		{"no schema entry", []byte{SessionTrackStateChange, 0x02, 0x01, '1'}},
		{"entry length beyond end", []byte{SessionTrackSchema, 0x09, 0x04, 's', 'h'}},
		{"type without length", []byte{SessionTrackSchema}},
		{"schema body not a string", []byte{SessionTrackSchema, 0x02, 0x05, 'a'}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			schema, found := SessionSchema(tt.state)
			require.False(t, found)
			require.Empty(t, schema)
		})
	}
}

func TestErrRoundTrip(t *testing.T) {
	e := &MySQLError{Code: ErAccessDenied, State: "28000", Message: "Access denied for user 'alice'@'10.0.0.1' (using password: YES)"}
	enc := AppendErr(nil, e)
	require.Equal(t, append([]byte{0xff, 0x15, 0x04, '#', '2', '8', '0', '0', '0'}, e.Message...), enc)
	require.Equal(t, e, ParseErr(enc))
	require.Equal(t, "ERROR 1045 (28000): "+e.Message, e.Error())

	// A state that is not five characters is replaced by the generic one.
	enc = AppendErr(nil, &MySQLError{Code: ErNetReadError, State: "bad", Message: "lost"})
	require.Equal(t, &MySQLError{Code: ErNetReadError, State: "HY000", Message: "lost"}, ParseErr(enc))

	ne := NewError(ErCONCount, "Too many connections (%d)", 7)
	require.Equal(t, &MySQLError{Code: ErCONCount, State: "HY000", Message: "Too many connections (7)"}, ne)
	require.Equal(t, ne, ParseErr(AppendErr(nil, ne)))

	long := &MySQLError{Code: ErNetPacketTooLarge, State: "08S01", Message: strings.Repeat("m", 1000)}
	require.Equal(t, long, ParseErr(AppendErr(nil, long)))
}

func TestParseErrMalformedAndOld(t *testing.T) {
	for _, in := range [][]byte{nil, {0xff}, {0xff, 0x15}, {0x00, 0x15, 0x04, 'x'}} {
		e := ParseErr(in)
		require.Zero(t, e.Code, "%x", in)
		require.Equal(t, "HY000", e.State)
		require.Equal(t, "malformed error packet", e.Message)
	}

	// Pre-4.1 ERR, or a server's refusal before the handshake: no SQL
	// state marker. It is encoded again as it came, so a client reads the
	// same error through the proxy as directly.
	full := append([]byte{0xff, 0x10, 0x04}, "Too many connections"...)
	e := ParseErr(full)
	require.Equal(t, &MySQLError{Code: 1040, State: "HY000", Message: "Too many connections", NoState: true}, e)
	require.Equal(t, full, AppendErr(nil, e))

	// A '#' that is not followed by a whole state belongs to the message.
	e = ParseErr([]byte{0xff, 0x10, 0x04, '#', 'a', 'b'})
	require.Equal(t, "HY000", e.State)
	require.Equal(t, "#ab", e.Message)

	// Code only.
	e = ParseErr([]byte{0xff, 0x10, 0x04})
	require.Equal(t, uint16(1040), e.Code)
	require.Empty(t, e.Message)
}

func TestWriteError(t *testing.T) {
	var sink bytes.Buffer
	p := NewPacketIO(&fuzzConn{w: &sink})
	p.SetSequence(2)
	e := NewError(ErHandshakeError, "Bad handshake")
	require.NoError(t, p.WriteError(e))
	require.Equal(t, fuzzRefEncode(AppendErr(nil, e), 2), sink.Bytes(), "WriteError must flush")
	require.Equal(t, uint8(3), p.Sequence())
}

func TestParseEOFStatus(t *testing.T) {
	tests := []struct {
		name         string
		data         []byte
		deprecateEOF bool
		track        bool
		status       uint16
		malformed    bool
	}{
		{name: "EOF", data: []byte{0xfe, 0x01, 0x00, 0x22, 0x00}, status: 0x0022},
		{name: "EOF with more results", data: []byte{0xfe, 0x00, 0x00, 0x0a, 0x00}, status: ServerStatusAutocommit | ServerMoreResultsExists},
		{name: "pre-4.1 EOF", data: []byte{0xfe}},
		{name: "short EOF", data: []byte{0xfe, 0x00, 0x00}, malformed: true},
		{name: "empty EOF", data: nil, malformed: true},
		{name: "deprecate-EOF OK", data: []byte{0xfe, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00}, deprecateEOF: true, status: 0x0003},
		{
			name:         "deprecate-EOF OK with state",
			data:         AppendOK(nil, EOFHeader, OKInfo{Status: ServerStatusInTrans | ServerSessionStateChanged, SessionState: pktTestStateBlock()}, true),
			deprecateEOF: true, track: true, status: ServerStatusInTrans | ServerSessionStateChanged,
		},
		{name: "deprecate-EOF OK truncated", data: []byte{0xfe}, deprecateEOF: true, malformed: true},
		{name: "deprecate-EOF OK malformed", data: []byte{0xfe, 0xfc}, deprecateEOF: true, malformed: true},
		{name: "deprecate-EOF empty", data: nil, deprecateEOF: true, malformed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, err := ParseEOFStatus(tt.data, tt.deprecateEOF, tt.track)
			if tt.malformed {
				require.ErrorIs(t, err, ErrMalformed)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.status, status)
		})
	}
}

func TestIsEOFPacket(t *testing.T) {
	eof := []byte{0xfe, 0x00, 0x00, 0x02, 0x00}
	tests := []struct {
		name string
		pk   Packet
		want bool
	}{
		{"EOF", Packet{Len: 5, Data: eof, Complete: true}, true},
		{"pre-4.1 EOF", Packet{Len: 1, Data: eof[:1], Complete: true}, true},
		{"deprecate-EOF OK with info", Packet{Len: 40, Data: append([]byte{0xfe}, make([]byte, 39)...), Complete: true}, true},
		{"just below a max packet", Packet{Len: MaxPayloadLen - 1, Data: eof[:1]}, true},
		// A row whose first value is 16 MiB or longer starts with 0xfe too,
		// and always fills a max packet.
		{"row of a max packet", Packet{Len: MaxPayloadLen, Data: eof[:1]}, false},
		{"empty", Packet{Len: 0, Complete: true}, false},
		{"OK", Packet{Len: 7, Data: []byte{0, 0, 0, 2, 0, 0, 0}, Complete: true}, false},
		{"ERR", Packet{Len: 3, Data: []byte{0xff, 0x15, 0x04}, Complete: true}, false},
		{"row", Packet{Len: 2, Data: []byte{0x01, 'a'}, Complete: true}, false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, IsEOFPacket(tt.pk), tt.name)
	}
}
