package traffic

import (
	"database/sql/driver"
	"strconv"

	"github.com/switchyard-db/switchyard/pkg/mysql"
)

// addWireRow adds to sum the checksum of one text-protocol row rebuilt from
// the driver's values, as the proxy computes it on the rows it forwards
// (mysql.RowChecksum of the row packet: each column a length-encoded
// string, NULL as 0xfb). The driver parses integer columns; their decimal
// text is rebuilt exactly (ZEROFILL padding is not). Floats and times
// cannot be rebuilt byte for byte: ok is false and the row is not compared
// by checksum, only counted.
func addWireRow(sum uint64, vals []driver.Value) (uint64, bool) {
	var buf [256]byte
	row := buf[:0]
	var num [24]byte
	for _, v := range vals {
		switch x := v.(type) {
		case nil:
			row = append(row, 0xfb)
		case []byte:
			row = mysql.AppendLenEncString(row, x)
		case string:
			row = mysql.AppendLenEncString(row, []byte(x))
		case int64:
			row = mysql.AppendLenEncString(row, strconv.AppendInt(num[:0], x, 10))
		case uint64:
			row = mysql.AppendLenEncString(row, strconv.AppendUint(num[:0], x, 10))
		default:
			return sum, false
		}
	}
	return sum + mysql.RowChecksum(row), true
}
