package backend

import (
	"errors"
	"fmt"

	"github.com/switchyard-db/switchyard/pkg/mysql"
)

// The proxy's own statements on a backend connection (migration: reading
// state from the old backend, replaying it on the new one). They run only
// between client commands.

// column is the part of a column definition the proxy uses.
type column struct {
	charset uint16
	typ     byte
}

// execSQL runs q and expects an OK.
func execSQL(be *mysql.PacketIO, caps uint32, q string) error {
	cols, _, err := queryText(be, caps, q)
	if err == nil && cols != nil {
		return fmt.Errorf("%q returned rows", q)
	}
	return err
}

// queryText runs q with COM_QUERY and reads a text result set (cols nil
// for an OK). NULL values are nil.
func queryText(be *mysql.PacketIO, caps uint32, q string) ([]column, [][][]byte, error) {
	be.ResetSequence()
	if err := be.WritePacket(append([]byte{mysql.ComQuery}, q...)); err != nil {
		return nil, nil, err
	}
	if err := be.Flush(); err != nil {
		return nil, nil, err
	}
	data, err := be.ReadPacket(0)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case len(data) == 0:
		return nil, nil, errors.New("empty response")
	case data[0] == mysql.ErrHeader:
		return nil, nil, mysql.ParseErr(data)
	case data[0] == mysql.OKHeader:
		ok, err := mysql.ParseOK(data, caps&mysql.ClientSessionTrack != 0)
		if err == nil && ok.Status&mysql.ServerMoreResultsExists != 0 {
			err = errors.New("unexpected multiple results")
		}
		return nil, nil, err
	}
	n, _, _, ok := mysql.ReadLenEncInt(data)
	if !ok || n == 0 || n > 4096 {
		return nil, nil, errors.New("bad column count")
	}
	cols := make([]column, n)
	for i := range cols {
		def, err := be.ReadPacket(0)
		if err != nil {
			return nil, nil, err
		}
		if cols[i], err = parseColumn(def); err != nil {
			return nil, nil, err
		}
	}
	if caps&mysql.ClientDeprecateEOF == 0 {
		if _, err := be.ReadPacket(0); err != nil {
			return nil, nil, err
		}
	}
	var rows [][][]byte
	for {
		data, err := be.ReadPacket(0)
		if err != nil {
			return nil, nil, err
		}
		if len(data) > 0 && data[0] == mysql.ErrHeader {
			return nil, nil, mysql.ParseErr(data)
		}
		if len(data) > 0 && data[0] == 0xfe && len(data) < 0xffffff {
			return cols, rows, nil
		}
		row := make([][]byte, 0, n)
		for pos := 0; len(row) < int(n); {
			if pos >= len(data) {
				return nil, nil, errors.New("short row")
			}
			if data[pos] == 0xfb {
				row = append(row, nil)
				pos++
				continue
			}
			v, m, ok := mysql.ReadLenEncString(data[pos:])
			if !ok {
				return nil, nil, errors.New("bad row")
			}
			row = append(row, append([]byte{}, v...))
			pos += m
		}
		rows = append(rows, row)
	}
}

// parseColumn reads the charset and type of a column definition.
func parseColumn(def []byte) (column, error) {
	pos := 0
	for i := 0; i < 6; i++ { // catalog, schema, table, org_table, name, org_name
		_, n, ok := mysql.ReadLenEncString(def[pos:])
		if !ok {
			return column{}, errors.New("bad column definition")
		}
		pos += n
	}
	_, _, n, ok := mysql.ReadLenEncInt(def[pos:])
	if !ok || len(def) < pos+n+7 {
		return column{}, errors.New("bad column definition")
	}
	pos += n
	return column{charset: uint16(def[pos]) | uint16(def[pos+1])<<8, typ: def[pos+6]}, nil
}
