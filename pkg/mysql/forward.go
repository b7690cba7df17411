package mysql

// ForwardRun copies to dst, in one piece, the complete packets already
// buffered from p that are ordinary rows or column definitions, and stops
// before the first packet that needs a look: a terminator (EOF/OK with
// header 0xfe), an ERR, an empty packet, a packet of 16 MiB or more, or
// one not wholly buffered. Result sets are mostly such runs, so a row costs
// a bounds check instead of a call per packet.
//
// Bytes are copied unchanged, so the packets' sequence ids must already be
// right for dst: ForwardRun only runs while each buffered packet carries the
// sequence id that dst expects next, which holds in the command phase where
// client and backend number the packets of a response alike. It returns the
// number of packets copied.
func (p *PacketIO) ForwardRun(dst *PacketIO) (int, error) {
	return p.ForwardRunEach(dst, nil)
}

// ForwardRunEach is ForwardRun that also hands each copied packet's payload
// to each (when not nil) before it is written; the payload is valid only
// during the call. Shadowing uses it to checksum a sampled result's rows.
func (p *PacketIO) ForwardRunEach(dst *PacketIO, each func(payload []byte)) (int, error) {
	if p.pending {
		return 0, nil
	}
	buf := p.rd.buf
	start, pos, end := p.rd.r, p.rd.r, p.rd.w
	seq := dst.seq
	count := 0
	for pos+5 <= end {
		n := uint24(buf[pos:])
		if n == 0 || n >= MaxPayloadLen || pos+4+n > end || buf[pos+3] != seq {
			break
		}
		first := buf[pos+4]
		if first == EOFHeader || first == ErrHeader {
			break
		}
		if each != nil {
			each(buf[pos+4 : pos+4+n])
		}
		pos += 4 + n
		seq++
		count++
	}
	if count == 0 {
		return 0, nil
	}
	if err := dst.wr.write(buf[start:pos]); err != nil {
		return 0, err
	}
	p.rd.r = pos
	p.seq, dst.seq = seq, seq
	return count, nil
}
