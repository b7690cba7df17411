package mysql

// PatchCurrent overwrites len(b) bytes at offset off of the payload of the
// packet announced by Next, before it is forwarded: the proxy uses it to
// translate prepared-statement ids. off+len(b) must lie within the first 64
// bytes, or within the whole payload when it is buffered complete.
func (p *PacketIO) PatchCurrent(off int, b []byte) bool {
	if !p.pending || off < 0 || off+len(b) > p.curLen || off+len(b) > p.rd.w-p.rd.r {
		return false
	}
	copy(p.rd.buf[p.rd.r+off:], b)
	if p.curLen > largeBufSize && off < len(p.prefix) {
		copy(p.prefix[off:], b)
	}
	return true
}

// SessionSysvars calls fn for each system variable change in the session
// state of an OK packet.
func SessionSysvars(state []byte, fn func(name, value string)) {
	for len(state) > 0 {
		typ := state[0]
		body, n, ok := ReadLenEncString(state[1:])
		if !ok {
			return
		}
		if typ == SessionTrackSystemVariables {
			name, m, ok := ReadLenEncString(body)
			if ok {
				if value, _, ok := ReadLenEncString(body[m:]); ok {
					fn(string(name), string(value))
				}
			}
		}
		state = state[1+n:]
	}
}
