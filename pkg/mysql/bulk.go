package mysql

import (
	"encoding/binary"
	"fmt"
)

// COM_STMT_BULK_EXECUTE flags.
const (
	// BulkSendUnitResults asks for one result row per parameter set
	// (MARIADB_CLIENT_BULK_UNIT_RESULTS); older servers read 64 as "return
	// generated ids".
	BulkSendUnitResults uint16 = 64
	// BulkSendTypes says the parameter types follow the flags.
	BulkSendTypes uint16 = 128
)

// Bulk parameter indicators: one byte before each value.
const (
	BulkIndicatorNone    byte = 0 // a value follows
	BulkIndicatorNull    byte = 1
	BulkIndicatorDefault byte = 2
	BulkIndicatorIgnore  byte = 3
)

// BulkExecute is a decoded COM_STMT_BULK_EXECUTE.
type BulkExecute struct {
	StmtID uint32
	Flags  uint16
	// Types are the parameters' (field type, flag) pairs when the packet
	// carries them (BulkSendTypes).
	Types [][2]byte
	// Rows is the number of parameter sets.
	Rows int
}

// StmtIDOf returns the statement id of a COM_STMT_* request.
func StmtIDOf(data []byte) (uint32, bool) {
	if len(data) < 5 {
		return 0, false
	}
	return binary.LittleEndian.Uint32(data[1:]), true
}

// ParseBulkExecute decodes a COM_STMT_BULK_EXECUTE for a statement of
// params parameters. types are the parameter types to assume when the
// packet does not carry its own (those of the statement's previous
// execution); each row is params indicator bytes, each followed by a binary
// value when it is BulkIndicatorNone. It never panics on malformed input.
func ParseBulkExecute(data []byte, params int, types [][2]byte) (*BulkExecute, error) {
	if len(data) < 7 || data[0] != ComStmtBulkExecute {
		return nil, fmt.Errorf("%w: bulk execute header", ErrMalformed)
	}
	if params <= 0 {
		return nil, fmt.Errorf("%w: bulk execute of a statement without parameters", ErrMalformed)
	}
	b := &BulkExecute{StmtID: binary.LittleEndian.Uint32(data[1:]), Flags: binary.LittleEndian.Uint16(data[5:])}
	pos := 7
	if b.Flags&BulkSendTypes != 0 {
		if len(data)-pos < 2*params {
			return nil, fmt.Errorf("%w: bulk execute parameter types", ErrMalformed)
		}
		for i := 0; i < params; i++ {
			b.Types = append(b.Types, [2]byte{data[pos], data[pos+1]})
			pos += 2
		}
		types = b.Types
	}
	if len(types) != params {
		return nil, fmt.Errorf("%w: bulk execute without parameter types", ErrMalformed)
	}
	for pos < len(data) {
		for i := 0; i < params; i++ {
			if pos >= len(data) {
				return nil, fmt.Errorf("%w: bulk execute row %d is cut short", ErrMalformed, b.Rows+1)
			}
			ind := data[pos]
			pos++
			switch ind {
			case BulkIndicatorNone:
				n, err := BinaryValueLen(types[i][0], data[pos:])
				if err != nil {
					return nil, fmt.Errorf("bulk execute row %d parameter %d: %w", b.Rows+1, i+1, err)
				}
				pos += n
			case BulkIndicatorNull, BulkIndicatorDefault, BulkIndicatorIgnore:
			default:
				return nil, fmt.Errorf("%w: bulk execute indicator %d", ErrMalformed, ind)
			}
		}
		b.Rows++
	}
	if b.Rows == 0 {
		return nil, fmt.Errorf("%w: bulk execute without parameter sets", ErrMalformed)
	}
	return b, nil
}

// Field types (protocol::ColumnType) that BinaryValueLen distinguishes.
const (
	TypeDecimal    byte = 0x00
	TypeTiny       byte = 0x01
	TypeShort      byte = 0x02
	TypeLong       byte = 0x03
	TypeFloat      byte = 0x04
	TypeDouble     byte = 0x05
	TypeNull       byte = 0x06
	TypeTimestamp  byte = 0x07
	TypeLongLong   byte = 0x08
	TypeInt24      byte = 0x09
	TypeDate       byte = 0x0a
	TypeTime       byte = 0x0b
	TypeDateTime   byte = 0x0c
	TypeYear       byte = 0x0d
	TypeNewDate    byte = 0x0e
	TypeVarchar    byte = 0x0f
	TypeBit        byte = 0x10
	TypeJSON       byte = 0xf5
	TypeNewDecimal byte = 0xf6
	TypeEnum       byte = 0xf7
	TypeSet        byte = 0xf8
	TypeTinyBlob   byte = 0xf9
	TypeMediumBlob byte = 0xfa
	TypeLongBlob   byte = 0xfb
	TypeBlob       byte = 0xfc
	TypeVarString  byte = 0xfd
	TypeString     byte = 0xfe
	TypeGeometry   byte = 0xff
)

// BinaryValueLen returns the length of one binary-protocol value of type t
// at the start of b.
func BinaryValueLen(t byte, b []byte) (int, error) {
	var n int
	switch t {
	case TypeNull:
		return 0, nil
	case TypeTiny:
		n = 1
	case TypeShort, TypeYear:
		n = 2
	case TypeLong, TypeInt24, TypeFloat:
		n = 4
	case TypeLongLong, TypeDouble:
		n = 8
	case TypeDate, TypeDateTime, TypeTimestamp, TypeTime, TypeNewDate:
		// A length byte, then that many bytes (0, 4, 7, 8, 11 or 12).
		if len(b) < 1 {
			return 0, fmt.Errorf("%w: temporal value", ErrMalformed)
		}
		n = 1 + int(b[0])
	default:
		// Strings, decimals, blobs, JSON, bit, enum, set, geometry.
		_, m, ok := ReadLenEncString(b)
		if !ok {
			return 0, fmt.Errorf("%w: length-encoded value", ErrMalformed)
		}
		n = m
	}
	if len(b) < n {
		return 0, fmt.Errorf("%w: value of type 0x%02x cut short", ErrMalformed, t)
	}
	return n, nil
}
