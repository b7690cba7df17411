package mysql

import (
	"fmt"
)

// maxQueryAttributes bounds how many attributes QueryAttributesLen accepts;
// MySQL itself has no lower limit than the packet size, but a proxy that only
// needs to find the query text does not walk more.
const maxQueryAttributes = 4096

// QueryAttributesLen returns the length of the attribute block that starts a
// COM_QUERY payload (after the command byte) when CLIENT_QUERY_ATTRIBUTES is
// negotiated: the parameter count, the parameter set count (1), and for a
// non-zero count the NULL bitmap, the new-params-bound flag, each
// attribute's type and name, and the values. The query text follows it.
func QueryAttributesLen(b []byte) (int, error) {
	count, _, n, ok := ReadLenEncInt(b)
	if !ok {
		return 0, fmt.Errorf("%w: query attribute count", ErrMalformed)
	}
	pos := n
	if _, _, n, ok = ReadLenEncInt(b[pos:]); !ok {
		return 0, fmt.Errorf("%w: query attribute set count", ErrMalformed)
	}
	pos += n
	if count == 0 {
		return pos, nil
	}
	if count > maxQueryAttributes {
		return 0, fmt.Errorf("%w: %d query attributes", ErrMalformed, count)
	}
	nullLen := int(count+7) / 8
	if len(b) < pos+nullLen+1 {
		return 0, fmt.Errorf("%w: query attribute NULL bitmap", ErrMalformed)
	}
	nulls := b[pos : pos+nullLen]
	pos += nullLen
	if b[pos] != 1 {
		return 0, fmt.Errorf("%w: query attributes without types", ErrMalformed)
	}
	pos++
	types := make([]byte, count)
	for i := range types {
		if len(b) < pos+2 {
			return 0, fmt.Errorf("%w: query attribute type", ErrMalformed)
		}
		types[i] = b[pos]
		pos += 2
		_, n, ok := ReadLenEncString(b[pos:])
		if !ok {
			return 0, fmt.Errorf("%w: query attribute name", ErrMalformed)
		}
		pos += n
	}
	for i, t := range types {
		if nulls[i/8]&(1<<(i%8)) != 0 {
			continue
		}
		n, err := BinaryValueLen(t, b[pos:])
		if err != nil {
			return 0, fmt.Errorf("query attribute %d: %w", i+1, err)
		}
		pos += n
	}
	return pos, nil
}
