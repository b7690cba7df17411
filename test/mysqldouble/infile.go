package mysqldouble

import (
	"bytes"
	"strings"
)

// loadLocal answers LOAD DATA LOCAL INFILE 'name' ... as a server does: it
// asks the client for the file, reads it to the empty packet that ends it,
// and reports one affected row per line. Nothing is stored.
func (c *session) loadLocal(q string) error {
	name := strings.TrimSpace(q[len(loadLocalPrefix):])
	if len(name) > 0 && (name[0] == '\'' || name[0] == '"') {
		if end := strings.IndexByte(name[1:], name[0]); end >= 0 {
			name = name[1 : end+1]
		}
	}
	if err := c.pc.writePacket(append([]byte{0xfb}, name...)); err != nil {
		return err
	}
	var lines uint64
	for {
		p, err := c.pc.readPacket()
		if err != nil {
			return err
		}
		if len(p) == 0 {
			break
		}
		lines += uint64(bytes.Count(p, []byte{'\n'}))
	}
	c.srv.stats.infileLines.Add(int64(lines))
	return c.pc.writePacket(okPacketRows(hdrOK, c.caps, c.st.status(), lines, nil))
}

const loadLocalPrefix = "LOAD DATA LOCAL INFILE "
