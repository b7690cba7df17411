package mysqldouble

import (
	"errors"
	"fmt"
)

var errMalformed = errors.New("mysqldouble: malformed packet")

// handshakeResponse is a parsed HandshakeResponse41, or an SSLRequest when sslRequest is
// set (an SSLRequest is the same packet cut off after the 23-byte filler).
type handshakeResponse struct {
	caps       uint32 // client capabilities as sent
	ext        uint32 // MariaDB extended capabilities (last filler bytes)
	sslRequest bool
	user       string
	auth       []byte
	db         string
	hasDB      bool
	plugin     string
}

func parseHandshakeResponse(p []byte, serverCaps uint32) (handshakeResponse, error) {
	var hr handshakeResponse
	r := &reader{b: p}
	caps, ok := r.uint32()
	if !ok {
		return hr, fmt.Errorf("%w: short handshake response", errMalformed)
	}
	if caps&capProtocol41 == 0 {
		return hr, fmt.Errorf("%w: client without CLIENT_PROTOCOL_41", errMalformed)
	}
	hr.caps = caps
	// max packet size [4], character set [1], filler [19], MariaDB extended capabilities [4]
	if _, ok := r.n(4 + 1 + 19); !ok {
		return hr, fmt.Errorf("%w: short handshake response", errMalformed)
	}
	if hr.ext, ok = r.uint32(); !ok {
		return hr, fmt.Errorf("%w: short handshake response", errMalformed)
	}
	if caps&capLongPassword != 0 {
		hr.ext = 0
	}
	if len(r.b) == 0 {
		if caps&capSSL == 0 {
			return hr, fmt.Errorf("%w: handshake response without user", errMalformed)
		}
		hr.sslRequest = true
		return hr, nil
	}
	// Fields are present according to the capabilities both sides share.
	neg := caps & serverCaps
	hr.user, _ = r.nulString()
	switch {
	case neg&capPluginAuthLenenc != 0:
		hr.auth, ok = r.lenEncBytes()
	case neg&capSecureConnection != 0:
		var n byte
		if n, ok = r.uint8(); ok {
			hr.auth, ok = r.n(int(n))
		}
	default:
		var s string
		s, ok = r.nulString()
		hr.auth = []byte(s)
	}
	if !ok {
		return hr, fmt.Errorf("%w: bad auth response length", errMalformed)
	}
	hr.auth = append([]byte(nil), hr.auth...)
	if neg&capConnectWithDB != 0 && len(r.b) > 0 {
		hr.db, _ = r.nulString()
		hr.hasDB = hr.db != ""
	}
	if neg&capPluginAuth != 0 && len(r.b) > 0 {
		hr.plugin, _ = r.nulString()
	}
	if neg&capConnectAttrs != 0 && len(r.b) > 0 {
		attrs, ok := r.lenEncBytes()
		if !ok {
			return hr, fmt.Errorf("%w: bad connection attributes length", errMalformed)
		}
		ar := &reader{b: attrs}
		for len(ar.b) > 0 {
			if _, ok := ar.lenEncBytes(); !ok {
				return hr, fmt.Errorf("%w: bad connection attribute", errMalformed)
			}
		}
	}
	return hr, nil
}
