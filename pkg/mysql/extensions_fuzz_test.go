package mysql

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzParseBulkExecute: ParseBulkExecute never panics, never reads past
// the packet, and what it accepts has the rows its indicators describe.
func FuzzParseBulkExecute(f *testing.F) {
	types := [][2]byte{{TypeLong, 0}, {TypeVarString, 0}, {TypeDateTime, 0}}
	row := []byte{BulkIndicatorNone, 7, 0, 0, 0, BulkIndicatorNone, 3, 'a', 'b', 'c', BulkIndicatorNone, 4, 0xe8, 0x07, 1, 2}
	f.Add(bulkPacket(1, BulkSendTypes, types, row, []byte{1, 2, 3}), uint8(3))
	f.Add(bulkPacket(1, BulkSendTypes|BulkSendUnitResults, types[:1], []byte{0, 1, 2, 3, 4}), uint8(1))
	f.Add(bulkPacket(1, BulkSendTypes, [][2]byte{{TypeBlob, 0}}, []byte{0, 0xfc, 1, 0, 'x'}), uint8(1))
	f.Add([]byte{ComStmtBulkExecute}, uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, params uint8) {
		b, err := ParseBulkExecute(data, int(params), nil)
		if err != nil {
			return
		}
		require.Positive(t, b.Rows)
		require.Len(t, b.Types, int(params))
		// Each row has at least one indicator byte per parameter.
		require.LessOrEqual(t, 7+2*int(params)+b.Rows*int(params), len(data))
		id, ok := StmtIDOf(data)
		require.True(t, ok)
		require.Equal(t, id, b.StmtID)
	})
}

// FuzzParseProgress: progress reports round-trip, and nothing else is
// mistaken for one.
func FuzzParseProgress(f *testing.F) {
	f.Add(extTestProgress)
	f.Add(AppendErr(nil, NewError(1064, "syntax error")))
	f.Add([]byte{0xff, 0xff, 0xff, 1, 1, 1, 0, 0, 0, 0xfc, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseProgress(data)
		if !IsProgress(data) {
			require.Error(t, err)
			return
		}
		if err != nil {
			require.ErrorIs(t, err, ErrMalformed)
			return
		}
		again, err := ParseProgress(AppendProgress(nil, p))
		require.NoError(t, err)
		require.Equal(t, p, again)
	})
}

// FuzzQueryAttributesLen: the attribute block never extends past the
// packet.
func FuzzQueryAttributesLen(f *testing.F) {
	f.Add([]byte("\x00\x01SELECT 1"))
	f.Add([]byte{2, 1, 0x02, 1, TypeVarString, 0, 3, 'f', 'o', 'o', TypeLongLong, 0, 1, 'n', 3, 'b', 'a', 'r', 'K'})
	f.Add([]byte{1, 1, 0, 1, TypeDateTime, 0, 1, 'd', 11, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := QueryAttributesLen(data)
		if err != nil {
			return
		}
		require.LessOrEqual(t, n, len(data))
		require.GreaterOrEqual(t, n, 2)
	})
}

// FuzzParseKill: a recognised KILL starts with KILL, and re-encodes to a
// statement that parses the same.
func FuzzParseKill(f *testing.F) {
	for _, q := range []string{"KILL 5", "kill query 7;", "KILL HARD CONNECTION 9", "/* x */ KILL 5", "KILL USER u"} {
		f.Add([]byte(q))
	}
	f.Fuzz(func(t *testing.T, q []byte) {
		k, ok := ParseKill(q)
		if !ok {
			return
		}
		require.True(t, StartsWithKill(q))
		again, ok := ParseKill(AppendKill(nil, k))
		require.True(t, ok)
		require.Equal(t, k, again)
	})
}
