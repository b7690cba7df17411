package mysqldouble

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"
)

// authTimeout bounds the connection phase so a client that stalls mid-handshake cannot pin
// a goroutine for the life of the server.
const authTimeout = 30 * time.Second

var errAccessDenied = errors.New("mysqldouble: access denied")

// session is one client connection.
type session struct {
	srv    *Server
	raw    net.Conn
	pc     *packetConn
	connID uint32
	host   string
	tls    bool
	caps   uint32 // negotiated capabilities
	ext    uint32 // negotiated MariaDB extended capabilities
	// attrs are the query attributes of the current COM_QUERY (CLIENT_QUERY_ATTRIBUTES).
	attrs map[string]string
	// noMetadata is set by SET resultset_metadata = NONE (CLIENT_OPTIONAL_RESULTSET_METADATA).
	noMetadata bool
	user       string
	db         string
	hasDB      bool
	st         sessionState
}

func (c *session) serverCaps() uint32 {
	caps := baseCapabilities
	if c.srv.cfg.TLS != nil {
		caps |= capSSL
	}
	if c.srv.cfg.MySQL8Extensions {
		caps |= capQueryAttributes | capOptionalMetadata
	}
	if c.srv.cfg.MariaDBExt != 0 {
		caps &^= capLongPassword
	}
	return caps
}

func (c *session) authenticate() error {
	c.host = "localhost"
	if h, _, err := net.SplitHostPort(c.raw.RemoteAddr().String()); err == nil {
		c.host = h
	}
	_ = c.raw.SetDeadline(time.Now().Add(authTimeout))

	scramble := newScramble()
	if err := c.pc.writePacket(handshakeV10(c.srv.cfg.ServerVersion, c.connID, c.serverCaps(),
		c.srv.cfg.MariaDBExt, scramble, c.srv.cfg.DefaultAuthPlugin)); err != nil {
		return err
	}
	hr, err := c.readHandshakeResponse()
	if err != nil {
		return err
	}
	if hr.sslRequest {
		if c.srv.cfg.TLS == nil {
			return c.fail(codeBadHandshake, sqlStateConnection, "Bad handshake",
				fmt.Errorf("%w: SSLRequest without CLIENT_SSL offered", errMalformed))
		}
		tc := tls.Server(c.raw, c.srv.cfg.TLS)
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("mysqldouble: TLS handshake: %w", err)
		}
		c.pc.conn, c.tls = tc, true
		if hr, err = c.readHandshakeResponse(); err != nil {
			return err
		}
		if hr.sslRequest {
			return c.fail(codeBadHandshake, sqlStateConnection, "Bad handshake",
				fmt.Errorf("%w: second SSLRequest", errMalformed))
		}
	}
	c.caps = hr.caps & c.serverCaps()
	if c.srv.cfg.MariaDBExt != 0 && hr.caps&capLongPassword == 0 {
		c.ext = hr.ext & c.srv.cfg.MariaDBExt
	}
	c.srv.last.Store(&Negotiated{Capability: hr.caps, MariaDBExt: hr.ext})
	c.user, c.db, c.hasDB = hr.user, hr.db, hr.hasDB

	if c.srv.cfg.TiDB != nil && hr.plugin == PluginTiDBSessionToken {
		if err := c.sessionToken(hr.auth); err != nil {
			return err
		}
		_ = c.raw.SetDeadline(time.Time{})
		return nil
	}
	if acct, ok := c.srv.native[c.user]; ok {
		if err := c.nativePassword(acct, hr.plugin, scramble, hr.auth); err != nil {
			return err
		}
		_ = c.raw.SetDeadline(time.Time{})
		return nil
	}
	if c.caps&capPluginAuth == 0 {
		// Without CLIENT_PLUGIN_AUTH the client cannot follow an AuthSwitchRequest to
		// caching_sha2_password; MySQL refuses such clients the same way.
		c.srv.stats.failures.Add(1)
		return c.fail(codeNotSupportedAuth, sqlStateNotSupported,
			"Client does not support authentication protocol requested by server; consider upgrading MySQL client",
			errAccessDenied)
	}
	authResp := hr.auth
	if hr.plugin != pluginCachingSHA2 {
		scramble = newScramble()
		c.srv.stats.authSwitches.Add(1)
		if err := c.pc.writePacket(authSwitchRequest(pluginCachingSHA2, scramble)); err != nil {
			return err
		}
		if authResp, err = c.readAuthPacket(); err != nil {
			return err
		}
	}
	if err := c.cachingSHA2(scramble, authResp); err != nil {
		return err
	}
	_ = c.raw.SetDeadline(time.Time{})
	return nil
}

func (c *session) readHandshakeResponse() (handshakeResponse, error) {
	p, err := c.readAuthPacket()
	if err != nil {
		return handshakeResponse{}, err
	}
	hr, err := parseHandshakeResponse(p, c.serverCaps())
	if err != nil {
		return hr, c.fail(codeBadHandshake, sqlStateConnection, "Bad handshake", err)
	}
	return hr, nil
}

// readAuthPacket reads the next client packet of the connection phase, answering a
// sequence mismatch the way MySQL does before giving up on the connection.
func (c *session) readAuthPacket() ([]byte, error) {
	p, err := c.pc.readPacket()
	if errors.Is(err, errOutOfOrder) {
		return nil, c.fail(codeNetOutOfOrder, sqlStateConnection, "Got packets out of order", err)
	}
	return p, err
}

// cachingSHA2 runs the server side of caching_sha2_password once the client's scramble
// response (authResp) for the given scramble is known.
func (c *session) cachingSHA2(scramble, authResp []byte) error {
	password, known := c.srv.users[c.user]
	if len(authResp) == 0 || (len(authResp) == 1 && authResp[0] == 0) {
		// The client claims an empty password: no exchange, just the verdict.
		if known && password == "" {
			return c.pc.writePacket(okPacket(hdrOK, c.caps, statusAutocommit, nil))
		}
		return c.deny(false)
	}
	if len(authResp) != sha256.Size {
		return c.deny(true)
	}
	if digest, ok := c.srv.cachedDigest(c.user); ok && known && fastAuthMatches(digest, scramble, authResp) {
		if err := c.pc.writePacket([]byte{hdrAuthMoreData, sha2FastAuthOK}); err != nil {
			return err
		}
		c.srv.stats.fastAuthOK.Add(1)
		return c.pc.writePacket(okPacket(hdrOK, c.caps, statusAutocommit, nil))
	}
	// Unknown users also get here, so that the exchange does not reveal which accounts exist.
	if err := c.pc.writePacket([]byte{hdrAuthMoreData, sha2PerformFullAuth}); err != nil {
		return err
	}
	p, err := c.readAuthPacket()
	if err != nil {
		return err
	}
	var given []byte
	if c.tls {
		given, err = trimNUL(p)
	} else {
		if len(p) == 1 && p[0] == sha2RequestPublicKey {
			c.srv.stats.publicKeyRequests.Add(1)
			if err := c.pc.writePacket(append([]byte{hdrAuthMoreData}, c.srv.pubPEM...)); err != nil {
				return err
			}
			if p, err = c.readAuthPacket(); err != nil {
				return err
			}
		}
		// Anything that is not exactly one RSA block, such as a cleartext password sent over
		// an unencrypted connection, is refused like MySQL refuses it.
		given, err = c.decryptPassword(p, scramble)
	}
	if err != nil || !known || subtle.ConstantTimeCompare(given, []byte(password)) != 1 {
		return c.deny(true)
	}
	c.srv.remember(c.user, sha256.Sum256(sha256Sum(given)))
	if c.tls {
		c.srv.stats.fullAuthTLS.Add(1)
	} else {
		c.srv.stats.fullAuthRSA.Add(1)
	}
	return c.pc.writePacket(okPacket(hdrOK, c.caps, statusAutocommit, nil))
}

// decryptPassword undoes the client's RSA-OAEP(SHA1) encryption of (password + NUL) XORed
// with the scramble repeated over its length.
func (c *session) decryptPassword(p, scramble []byte) ([]byte, error) {
	if len(p) != c.srv.key.Size() {
		return nil, errAccessDenied
	}
	plain, err := rsa.DecryptOAEP(sha1.New(), nil, c.srv.key, p, nil)
	if err != nil {
		return nil, errAccessDenied
	}
	for i := range plain {
		plain[i] ^= scramble[i%len(scramble)]
	}
	return trimNUL(plain)
}

func trimNUL(p []byte) ([]byte, error) {
	if len(p) == 0 || p[len(p)-1] != 0 || bytes.IndexByte(p, 0) != len(p)-1 {
		return nil, errAccessDenied
	}
	return p[:len(p)-1], nil
}

func (c *session) deny(usedPassword bool) error {
	c.srv.stats.failures.Add(1)
	using := "NO"
	if usedPassword {
		using = "YES"
	}
	msg := fmt.Sprintf("Access denied for user '%s'@'%s' (using password: %s)", c.user, c.host, using)
	return c.fail(codeAccessDenied, sqlStateAccessDenied, msg, errAccessDenied)
}

// fail sends an ERR packet and returns cause, so callers end the connection with it.
func (c *session) fail(code uint16, sqlState, msg string, cause error) error {
	_ = c.pc.writePacket(errPacket(code, sqlState, msg))
	return cause
}

func (c *session) noteProtocolError(err error) {
	if errors.Is(err, errMalformed) || errors.Is(err, errOutOfOrder) || errors.Is(err, errPacketTooLarge) {
		c.srv.stats.protocolErrors.Add(1)
	}
}

// newScramble returns a 20-byte nonce of 7-bit bytes without NUL or '$', the alphabet
// MySQL draws its scrambles from (NUL would end the C string the greeting carries it in).
func newScramble() []byte {
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] &= 0x7f
		if b[i] == 0 || b[i] == '$' {
			b[i]++
		}
	}
	return b
}

func sha256Sum(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:]
}

// fastAuthMatches recovers SHA256(password) from the client's response
// XOR(SHA256(pw), SHA256(SHA256(SHA256(pw)) || scramble)) and checks that it hashes to the
// cached SHA256(SHA256(pw)).
func fastAuthMatches(digest [sha256.Size]byte, scramble, resp []byte) bool {
	h := sha256.New()
	h.Write(digest[:])
	h.Write(scramble)
	mask := h.Sum(nil)
	stage1 := make([]byte, sha256.Size)
	for i := range stage1 {
		stage1[i] = resp[i] ^ mask[i]
	}
	got := sha256.Sum256(stage1)
	return subtle.ConstantTimeCompare(got[:], digest[:]) == 1
}
