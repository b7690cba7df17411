package traffic

import (
	"encoding/binary"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// execPayload builds a COM_STMT_EXECUTE payload (after the command byte)
// binding the given types and values.
func execPayload(nulls byte, bound bool, types []uint16, values ...[]byte) []byte {
	p := []byte{7, 0, 0, 0, 0, 1, 0, 0, 0, nulls}
	if bound {
		p = append(p, 1)
		for _, t := range types {
			p = binary.LittleEndian.AppendUint16(p, t)
		}
	} else {
		p = append(p, 0)
	}
	for _, v := range values {
		p = append(p, v...)
	}
	return p
}

func TestDecodeParams(t *testing.T) {
	types := []uint16{typeLongLong, typeVarString, typeNull, typeDouble, typeDateTime, typeTiny | 0x8000, typeLong}
	payload := execPayload(0b0000_0100, true, types,
		binary.LittleEndian.AppendUint64(nil, uint64(^uint64(41))), // -42
		append([]byte{5}, "hello"...),
		binary.LittleEndian.AppendUint64(nil, math.Float64bits(2.5)),
		[]byte{7, 0xea, 0x07, 12, 4, 5, 6, 7}, // 2026-12-04 05:06:07
		[]byte{200},
		binary.LittleEndian.AppendUint32(nil, uint32(0xffffffff)), // -1
	)
	args, got, err := decodeParams(payload, len(types), nil)
	require.NoError(t, err)
	require.Equal(t, types, got)
	require.Equal(t, []any{int64(-42), []byte("hello"), nil, 2.5, time.Date(2026, 12, 4, 5, 6, 7, 0, time.UTC), uint64(200), int64(-1)}, args)

	// A later execute may leave the types out: the previous ones apply.
	again := execPayload(0, false, nil, binary.LittleEndian.AppendUint64(nil, 9), []byte{1, 'x'}, nil,
		binary.LittleEndian.AppendUint64(nil, math.Float64bits(0)), []byte{0}, []byte{1}, binary.LittleEndian.AppendUint32(nil, 3))
	args, _, err = decodeParams(again, len(types), got)
	require.NoError(t, err)
	require.Equal(t, int64(9), args[0])
	require.Equal(t, []byte("x"), args[1])
	require.Equal(t, time.Date(0, 0, 0, 0, 0, 0, 0, time.UTC), args[4])

	_, _, err = decodeParams(again, len(types), nil)
	require.ErrorContains(t, err, "without parameter types")
	_, _, err = decodeParams(payload[:14], len(types), nil)
	require.ErrorIs(t, err, errShortPayload)
	args, _, err = decodeParams(nil, 0, nil)
	require.NoError(t, err)
	require.Nil(t, args)
}

func TestIsRead(t *testing.T) {
	for norm, want := range map[string]bool{
		"select * from `t` where `id` = ?":            true,
		"select * from `t` where `id` = ? for update": false,
		"select ? into @`x`":                          false,
		"show tables":                                 true,
		"set `autocommit` = ?":                        true,
		"insert into `t` values ( ... )":              false,
		"update `t` set `c` = ?":                      false,
		"delete from `t`":                             false,
		"commit":                                      true,
	} {
		require.Equal(t, want, isRead(norm), norm)
	}
}
