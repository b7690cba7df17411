package mysql

import (
	"encoding/binary"
	"fmt"
)

// progressCode is the error code of MariaDB's progress report packets.
const progressCode = 0xffff

// Progress is one MariaDB progress report (MARIADB_CLIENT_PROGRESS): an
// ERR-headed packet with error code 0xFFFF that the server sends during a
// long command (ALTER TABLE, LOAD DATA INFILE, ...) before its real answer.
type Progress struct {
	Stage, MaxStage byte
	// Permille is the progress within the stage in thousandths of a
	// percent (0..100000), as the server sends it.
	Permille uint32
	Info     string
}

// IsProgress reports whether a response packet is a progress report, not
// an error: the command's answer is still to come.
func IsProgress(data []byte) bool {
	return len(data) >= 3 && data[0] == ErrHeader && binary.LittleEndian.Uint16(data[1:]) == progressCode
}

// ParseProgress decodes a progress report. The server writes one byte (the
// number of report strings, always 1) before the stage; it is skipped.
func ParseProgress(data []byte) (Progress, error) {
	var p Progress
	if !IsProgress(data) {
		return p, fmt.Errorf("%w: not a progress report", ErrMalformed)
	}
	b := data[3:]
	if len(b) < 1+1+1+3 {
		return p, fmt.Errorf("%w: progress report of %d bytes", ErrMalformed, len(data))
	}
	p.Stage, p.MaxStage = b[1], b[2]
	p.Permille = uint32(uint24(b[3:]))
	info, _, ok := ReadLenEncString(b[6:])
	if !ok {
		return p, fmt.Errorf("%w: progress report info", ErrMalformed)
	}
	p.Info = string(info)
	return p, nil
}

// AppendProgress encodes a progress report as MariaDB sends it.
func AppendProgress(b []byte, p Progress) []byte {
	b = append(b, ErrHeader, 0xff, 0xff, 1, p.Stage, p.MaxStage,
		byte(p.Permille), byte(p.Permille>>8), byte(p.Permille>>16))
	return AppendLenEncString(b, []byte(p.Info))
}
