package mysql

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
)

// extTestProgress is a progress report laid out as MariaDB's
// net_send_progress_packet writes it: 0xFF, code 0xFFFF, one byte (the
// number of strings, 1), stage, max stage, progress in 1/1000 %, info.
var extTestProgress = fuzzHex("ff" + "ffff" + "01" + "02" + "03" + "a08601" + "0c" + "636f7079696e6720726f7773")

func TestProgress(t *testing.T) {
	require.True(t, IsProgress(extTestProgress))
	p, err := ParseProgress(extTestProgress)
	require.NoError(t, err)
	require.Equal(t, Progress{Stage: 2, MaxStage: 3, Permille: 100000, Info: "copying rows"}, p)
	require.Equal(t, extTestProgress, AppendProgress(nil, p))

	require.False(t, IsProgress(AppendErr(nil, NewError(1064, "syntax"))), "an ordinary ERR")
	require.False(t, IsProgress([]byte{0xff, 0xff}))
	_, err = ParseProgress(extTestProgress[:7])
	require.ErrorIs(t, err, ErrMalformed)
	_, err = ParseProgress(extTestProgress[:len(extTestProgress)-1])
	require.ErrorIs(t, err, ErrMalformed, "info cut short")
}

// bulkPacket builds a COM_STMT_BULK_EXECUTE the way Connector/C does.
func bulkPacket(stmt uint32, flags uint16, types [][2]byte, rows ...[]byte) []byte {
	b := []byte{ComStmtBulkExecute}
	b = binary.LittleEndian.AppendUint32(b, stmt)
	b = binary.LittleEndian.AppendUint16(b, flags)
	if flags&BulkSendTypes != 0 {
		for _, t := range types {
			b = append(b, t[0], t[1])
		}
	}
	for _, r := range rows {
		b = append(b, r...)
	}
	return b
}

func TestParseBulkExecute(t *testing.T) {
	types := [][2]byte{{TypeLong, 0}, {TypeVarString, 0}, {TypeDateTime, 0}}
	row1 := append([]byte{BulkIndicatorNone, 7, 0, 0, 0, BulkIndicatorNone, 3, 'a', 'b', 'c'}, BulkIndicatorNone, 4, 0xe8, 0x07, 1, 2)
	row2 := []byte{BulkIndicatorNull, BulkIndicatorDefault, BulkIndicatorIgnore}
	data := bulkPacket(9, BulkSendTypes, types, row1, row2)
	b, err := ParseBulkExecute(data, 3, nil)
	require.NoError(t, err)
	require.Equal(t, &BulkExecute{StmtID: 9, Flags: BulkSendTypes, Types: types, Rows: 2}, b)

	// Without types in the packet, those of the previous execution.
	b, err = ParseBulkExecute(bulkPacket(9, 0, nil, row2, row2, row1), 3, types)
	require.NoError(t, err)
	require.Equal(t, 3, b.Rows)

	bad := []struct {
		name   string
		data   []byte
		params int
		types  [][2]byte
	}{
		{"header", data[:6], 3, nil},
		{"no parameters", data, 0, nil},
		{"types cut", bulkPacket(9, BulkSendTypes, types)[:9], 3, nil},
		{"no types known", bulkPacket(9, 0, nil, row2), 3, nil},
		{"no rows", bulkPacket(9, BulkSendTypes, types), 3, nil},
		{"row cut short", data[:len(data)-1], 3, nil},
		{"value cut short", bulkPacket(9, BulkSendTypes, types, row1[:8]), 3, nil},
		{"bad indicator", bulkPacket(9, BulkSendTypes, types, []byte{9, 1, 1}), 3, nil},
	}
	for _, tt := range bad {
		_, err := ParseBulkExecute(tt.data, tt.params, tt.types)
		require.Error(t, err, tt.name)
	}
}

func TestQueryAttributesLen(t *testing.T) {
	// No attributes: count 0, set count 1.
	n, err := QueryAttributesLen([]byte("\x00\x01SELECT 1"))
	require.NoError(t, err)
	require.Equal(t, 2, n)
	// Two attributes, the second NULL: bitmap 0b10, bound flag, types and
	// names, then the first value only.
	b := []byte{2, 1, 0x02, 1, TypeVarString, 0, 3, 'f', 'o', 'o', TypeLongLong, 0, 1, 'n'}
	b = append(b, 3, 'b', 'a', 'r')
	q := append(append([]byte(nil), b...), "KILL 5"...)
	n, err = QueryAttributesLen(q)
	require.NoError(t, err)
	require.Equal(t, "KILL 5", string(q[n:]))
	for i := 0; i < len(b); i++ {
		_, err := QueryAttributesLen(b[:i])
		require.Error(t, err, "cut at %d", i)
	}
}

func TestParseKill(t *testing.T) {
	good := map[string]KillStatement{
		"KILL 5":                        {ID: 5},
		"kill connection 5;":            {ID: 5},
		"  KILL\tQUERY  4294967296 ; ;": {Query: true, ID: 1 << 32},
		"KILL HARD QUERY 7":             {Modifier: "HARD", Query: true, ID: 7},
		"kill soft 8":                   {Modifier: "SOFT", ID: 8},
	}
	for q, want := range good {
		got, ok := ParseKill([]byte(q))
		require.True(t, ok, q)
		require.Equal(t, want, got, q)
	}
	for _, q := range []string{"KILL", "KILL QUERY", "KILL USER bob", "KILL QUERY ID 5", "KILL 5 6", "KILL /* x */ 5",
		"KILL 0x5", "KILL -5", "KILL 5; KILL 6", "KILLS 5", "SELECT 5", "KILL CONNECTION QUERY 5", "KILL 99999999999999999999"} {
		_, ok := ParseKill([]byte(q))
		require.False(t, ok, q)
	}
	require.Equal(t, "KILL HARD QUERY 12", string(AppendKill(nil, KillStatement{Modifier: "HARD", Query: true, ID: 12})))
	require.Equal(t, "KILL CONNECTION 3", string(AppendKill(nil, KillStatement{ID: 3})))
}

func TestStartsWithKill(t *testing.T) {
	for q, want := range map[string]bool{
		"KILL 5":                          true,
		"  kill query 5":                  true,
		"/* hi */ KILL 5":                 true,
		"-- c\nKILL 5":                    true,
		"# c\n kill 5":                    true,
		"/*!50000 KILL 5 */":              true,
		"/*M!100000 KILL 5 */":            true,
		"KILL":                            true,
		"killer()":                        false,
		"SELECT 'KILL 5'":                 false,
		"/* unterminated KILL 5":          false,
		"":                                false,
		"kill_switch = 1":                 false,
		"SELECT 1; KILL 5":                false, // documented: multi-statement texts are not parsed
		"\n\t/* a */ /* b */ KILL\tQUERY": true,
	} {
		require.Equal(t, want, StartsWithKill([]byte(q)), q)
	}
}
