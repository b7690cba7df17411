package traffic

import (
	"database/sql/driver"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/switchyard-db/switchyard/pkg/mysql"
)

// TestAddWireRow rebuilds the text-protocol row a client received from the
// driver's values: the checksum must be the proxy's over the same bytes.
func TestAddWireRow(t *testing.T) {
	wire := []byte{2, '4', '2', 0xfb, 3, 'a', 'b', 'c', 1, '7', 2, '-', '5', 0}
	sum, ok := addWireRow(10, []driver.Value{int64(42), nil, []byte("abc"), uint64(7), int64(-5), []byte{}})
	require.True(t, ok)
	require.Equal(t, 10+mysql.RowChecksum(wire), sum)
	_, ok = addWireRow(0, []driver.Value{float64(1.5)})
	require.False(t, ok, "a float's text cannot be rebuilt byte for byte")
	_, ok = addWireRow(0, []driver.Value{time.Now()})
	require.False(t, ok)
}
