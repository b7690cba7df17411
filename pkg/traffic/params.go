package traffic

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// MySQL column types that appear as prepared-statement parameter types.
const (
	typeDecimal    = 0x00
	typeTiny       = 0x01
	typeShort      = 0x02
	typeLong       = 0x03
	typeFloat      = 0x04
	typeDouble     = 0x05
	typeNull       = 0x06
	typeTimestamp  = 0x07
	typeLongLong   = 0x08
	typeInt24      = 0x09
	typeDate       = 0x0a
	typeTime       = 0x0b
	typeDateTime   = 0x0c
	typeYear       = 0x0d
	typeVarchar    = 0x0f
	typeBit        = 0x10
	typeJSON       = 0xf5
	typeNewDecimal = 0xf6
	typeEnum       = 0xf7
	typeSet        = 0xf8
	typeTinyBlob   = 0xf9
	typeMediumBlob = 0xfa
	typeLongBlob   = 0xfb
	typeBlob       = 0xfc
	typeVarString  = 0xfd
	typeString     = 0xfe
	typeGeometry   = 0xff
)

var errShortPayload = errors.New("COM_STMT_EXECUTE payload ends early")

// decodeParams decodes the parameters of a COM_STMT_EXECUTE payload (the
// packet after its command byte) for a statement with n parameters. types
// are the parameter types of the previous execute of the statement, used
// when this one does not send them (new-params-bound 0); the types in force
// are returned for the next execute.
func decodeParams(payload []byte, n int, types []uint16) ([]any, []uint16, error) {
	if n == 0 {
		return nil, types, nil
	}
	p := payload
	if len(p) < 9 {
		return nil, types, errShortPayload
	}
	p = p[9:] // statement id, flags, iteration count
	nullLen := (n + 7) / 8
	if len(p) < nullLen+1 {
		return nil, types, errShortPayload
	}
	nulls, bound := p[:nullLen], p[nullLen]
	p = p[nullLen+1:]
	if bound == 1 {
		if len(p) < 2*n {
			return nil, types, errShortPayload
		}
		types = make([]uint16, n)
		for i := range types {
			types[i] = binary.LittleEndian.Uint16(p[2*i:])
		}
		p = p[2*n:]
	}
	if len(types) != n {
		return nil, types, errors.New("an execute without parameter types, and none sent before")
	}
	args := make([]any, n)
	for i := 0; i < n; i++ {
		if nulls[i/8]&(1<<(i%8)) != 0 {
			continue
		}
		unsigned := types[i]&0x8000 != 0
		var err error
		args[i], p, err = decodeValue(byte(types[i]), unsigned, p)
		if err != nil {
			return nil, types, fmt.Errorf("parameter %d: %w", i+1, err)
		}
	}
	return args, types, nil
}

func decodeValue(t byte, unsigned bool, p []byte) (any, []byte, error) {
	need := func(k int) error {
		if len(p) < k {
			return errShortPayload
		}
		return nil
	}
	switch t {
	case typeNull:
		return nil, p, nil
	case typeTiny:
		if err := need(1); err != nil {
			return nil, p, err
		}
		if unsigned {
			return uint64(p[0]), p[1:], nil
		}
		return int64(int8(p[0])), p[1:], nil
	case typeShort, typeYear:
		if err := need(2); err != nil {
			return nil, p, err
		}
		v := binary.LittleEndian.Uint16(p)
		if unsigned {
			return uint64(v), p[2:], nil
		}
		return int64(int16(v)), p[2:], nil
	case typeLong, typeInt24:
		if err := need(4); err != nil {
			return nil, p, err
		}
		v := binary.LittleEndian.Uint32(p)
		if unsigned {
			return uint64(v), p[4:], nil
		}
		return int64(int32(v)), p[4:], nil
	case typeLongLong:
		if err := need(8); err != nil {
			return nil, p, err
		}
		v := binary.LittleEndian.Uint64(p)
		if unsigned {
			return v, p[8:], nil
		}
		return int64(v), p[8:], nil
	case typeFloat:
		if err := need(4); err != nil {
			return nil, p, err
		}
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(p))), p[4:], nil
	case typeDouble:
		if err := need(8); err != nil {
			return nil, p, err
		}
		return math.Float64frombits(binary.LittleEndian.Uint64(p)), p[8:], nil
	case typeDate, typeDateTime, typeTimestamp:
		if err := need(1); err != nil {
			return nil, p, err
		}
		l := int(p[0])
		if err := need(1 + l); err != nil {
			return nil, p, err
		}
		b := p[1 : 1+l]
		var y, mo, d, h, mi, s, us int
		if l >= 4 {
			y, mo, d = int(binary.LittleEndian.Uint16(b)), int(b[2]), int(b[3])
		}
		if l >= 7 {
			h, mi, s = int(b[4]), int(b[5]), int(b[6])
		}
		if l >= 11 {
			us = int(binary.LittleEndian.Uint32(b[7:]))
		}
		return time.Date(y, time.Month(mo), d, h, mi, s, us*1000, time.UTC), p[1+l:], nil
	case typeTime:
		if err := need(1); err != nil {
			return nil, p, err
		}
		l := int(p[0])
		if err := need(1 + l); err != nil {
			return nil, p, err
		}
		b := p[1 : 1+l]
		if l == 0 {
			return "00:00:00", p[1:], nil
		}
		if l < 8 {
			return nil, p, errShortPayload
		}
		sign := ""
		if b[0] == 1 {
			sign = "-"
		}
		days := binary.LittleEndian.Uint32(b[1:])
		str := fmt.Sprintf("%s%d:%02d:%02d", sign, int(days)*24+int(b[5]), b[6], b[7])
		if l >= 12 {
			str += fmt.Sprintf(".%06d", binary.LittleEndian.Uint32(b[8:]))
		}
		return str, p[1+l:], nil
	case typeDecimal, typeNewDecimal, typeVarchar, typeBit, typeJSON, typeEnum, typeSet, typeTinyBlob,
		typeMediumBlob, typeLongBlob, typeBlob, typeVarString, typeString, typeGeometry:
		n, rest, err := lenEnc(p)
		if err != nil {
			return nil, p, err
		}
		if uint64(len(rest)) < n {
			return nil, p, errShortPayload
		}
		return append([]byte(nil), rest[:n]...), rest[n:], nil
	}
	return nil, p, fmt.Errorf("unsupported parameter type 0x%02x", t)
}

func lenEnc(p []byte) (uint64, []byte, error) {
	if len(p) == 0 {
		return 0, p, errShortPayload
	}
	switch p[0] {
	case 0xfc:
		if len(p) < 3 {
			return 0, p, errShortPayload
		}
		return uint64(binary.LittleEndian.Uint16(p[1:])), p[3:], nil
	case 0xfd:
		if len(p) < 4 {
			return 0, p, errShortPayload
		}
		return uint64(p[1]) | uint64(p[2])<<8 | uint64(p[3])<<16, p[4:], nil
	case 0xfe:
		if len(p) < 9 {
			return 0, p, errShortPayload
		}
		return binary.LittleEndian.Uint64(p[1:]), p[9:], nil
	}
	return uint64(p[0]), p[1:], nil
}
