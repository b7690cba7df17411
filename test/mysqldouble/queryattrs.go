package mysqldouble

import (
	"encoding/binary"
	"fmt"
	"strconv"
)

// codeMalformed is ER_MALFORMED_PACKET.
const codeMalformed = 1835

// Parameter types the double decodes in query attributes.
const (
	typeTiny     = 0x01
	typeShort    = 0x02
	typeLong     = 0x03
	typeLongLong = 0x08
	typeVarchar  = 0x0f
	typeBlob     = 0xfc
	typeString   = 0xfe
)

// readQueryAttributes decodes the attribute block MySQL 8 puts before the query text
// of a COM_QUERY when CLIENT_QUERY_ATTRIBUTES is negotiated: parameter count, parameter
// set count (1), and for a non-zero count a NULL bitmap, the new-params-bound flag, each
// parameter's type and name, and the values. It keeps the attributes for
// mysql_query_attribute_string() and returns the query text.
func (c *session) readQueryAttributes(p []byte) ([]byte, error) {
	c.attrs = nil
	r := &reader{b: p}
	count, ok := r.lenEncInt()
	if !ok {
		return nil, fmt.Errorf("%w: attribute count", errMalformed)
	}
	if sets, ok := r.lenEncInt(); !ok || sets != 1 {
		return nil, fmt.Errorf("%w: attribute set count", errMalformed)
	}
	if count == 0 {
		return r.b, nil
	}
	if count > 1024 {
		return nil, fmt.Errorf("%w: %d attributes", errMalformed, count)
	}
	nulls, ok := r.n(int(count+7) / 8)
	if !ok {
		return nil, fmt.Errorf("%w: NULL bitmap", errMalformed)
	}
	if bound, ok := r.uint8(); !ok || bound != 1 {
		return nil, fmt.Errorf("%w: attributes without types", errMalformed)
	}
	types := make([]byte, count)
	names := make([]string, count)
	for i := range count {
		t, ok := r.n(2)
		if !ok {
			return nil, fmt.Errorf("%w: attribute type", errMalformed)
		}
		types[i] = t[0]
		name, ok := r.lenEncBytes()
		if !ok {
			return nil, fmt.Errorf("%w: attribute name", errMalformed)
		}
		names[i] = string(name)
	}
	c.attrs = make(map[string]string, count)
	for i := range count {
		if nulls[i/8]&(1<<(i%8)) != 0 {
			continue
		}
		var v string
		switch types[i] {
		case typeTiny:
			b, ok := r.n(1)
			if !ok {
				return nil, fmt.Errorf("%w: attribute value", errMalformed)
			}
			v = strconv.Itoa(int(int8(b[0])))
		case typeShort:
			b, ok := r.n(2)
			if !ok {
				return nil, fmt.Errorf("%w: attribute value", errMalformed)
			}
			v = strconv.Itoa(int(int16(binary.LittleEndian.Uint16(b))))
		case typeLong:
			b, ok := r.n(4)
			if !ok {
				return nil, fmt.Errorf("%w: attribute value", errMalformed)
			}
			v = strconv.Itoa(int(int32(binary.LittleEndian.Uint32(b))))
		case typeLongLong:
			b, ok := r.n(8)
			if !ok {
				return nil, fmt.Errorf("%w: attribute value", errMalformed)
			}
			v = strconv.FormatInt(int64(binary.LittleEndian.Uint64(b)), 10)
		case typeVarchar, typeVarString, typeString, typeBlob:
			b, ok := r.lenEncBytes()
			if !ok {
				return nil, fmt.Errorf("%w: attribute value", errMalformed)
			}
			v = string(b)
		default:
			return nil, fmt.Errorf("%w: attribute type 0x%02x not supported by the double", errMalformed, types[i])
		}
		c.attrs[names[i]] = v
	}
	return r.b, nil
}
