package backend

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/switchyard-db/switchyard/pkg/mysql"
)

// relayAuth relays the authentication exchange between backend and client
// until the backend says OK or ERR. The backend was sent an unknown plugin
// name, so it starts with an AuthSwitchRequest carrying its own scramble and
// the client answers it directly: the proxy never needs the password.
//
// The one exception is caching_sha2_password full authentication when only
// one side is TLS: then the password crosses the proxy, which encrypts it
// for the backend (RSA) or decrypts it from the client with its own key.
func (s *Session) relayAuth(initial bool) (ok bool, err error) {
	// The scramble serves this exchange only: an idle session does not keep it.
	defer func() { s.backendSalt = nil }()
	plugin := ""
	for {
		data, err := s.backend.ReadPacket(maxAuthPacket)
		if err != nil {
			s.reportBackendLost(err)
			return false, fmt.Errorf("%w: authentication: reading: %w", errBackendLost, err)
		}
		if len(data) == 0 {
			return false, s.protocolError("empty packet from backend during authentication")
		}
		switch data[0] {
		case mysql.OKHeader:
			okInfo, err := mysql.ParseOK(data, s.backendCap&mysql.ClientSessionTrack != 0)
			if err != nil {
				return false, s.protocolError(err.Error())
			}
			s.trackOK(okInfo)
			if err := s.writeOKToClient(data, okInfo); err != nil {
				return false, err
			}
			return true, s.client.Flush()
		case mysql.ErrHeader:
			if err := s.client.WritePacket(data); err != nil {
				return false, err
			}
			if err := s.client.Flush(); err != nil {
				return false, err
			}
			e := mysql.ParseErr(data)
			if initial {
				return false, fmt.Errorf("backend refused authentication: %w", e)
			}
			return false, nil
		case mysql.AuthSwitchHeader:
			req, err := mysql.ParseAuthSwitchRequest(data)
			if err != nil {
				return false, s.protocolError(err.Error())
			}
			plugin = req.Plugin
			s.backendSalt = req.Data
			reply, err := s.askClient(data)
			if err != nil {
				return false, err
			}
			if initial || s.mig.on {
				// Kept for migration (credential.go); dropped at once when
				// the session cannot move (startMigrationTracking).
				rec := s.mig.record()
				rec.plugin = plugin
				if plugin == mysql.AuthNativePassword {
					rec.cred.capture(req.Data, reply)
				} else {
					rec.cred.zero()
				}
			}
			if err := s.sendBackend(reply); err != nil {
				return false, err
			}
		case mysql.AuthMoreDataHeader:
			if plugin == "" && initial {
				// No switch happened: the backend kept its default plugin.
				plugin = mysql.AuthCachingSha2
			}
			if plugin == mysql.AuthCachingSha2 && len(data) == 2 {
				switch data[1] {
				case mysql.CachingSha2FastAuthOK:
					if err := s.client.WritePacket(data); err != nil {
						return false, err
					}
					continue // the OK packet follows
				case mysql.CachingSha2PerformFullAuth:
					if err := s.sha2FullAuth(data); err != nil {
						return false, err
					}
					continue
				}
			}
			if err := s.forwardAuthRound(data); err != nil {
				return false, err
			}
		default:
			return false, s.protocolError(fmt.Sprintf("unexpected packet 0x%02x from backend during authentication", data[0]))
		}
	}
}

// forwardAuthRound sends a backend auth packet to the client and the
// client's answer back to the backend.
func (s *Session) forwardAuthRound(data []byte) error {
	reply, err := s.askClient(data)
	if err != nil {
		return err
	}
	return s.sendBackend(reply)
}

// askClient sends one authentication packet to the client and returns its
// answer.
func (s *Session) askClient(data []byte) ([]byte, error) {
	if err := s.client.WritePacket(data); err != nil {
		return nil, err
	}
	if err := s.client.Flush(); err != nil {
		return nil, err
	}
	reply, err := s.client.ReadPacket(maxAuthPacket)
	if err != nil {
		return nil, fmt.Errorf("authentication: reading client: %w", err)
	}
	return reply, nil
}

func (s *Session) sendBackend(payload []byte) error {
	err := s.backend.WritePacket(payload)
	if err == nil {
		err = s.backend.Flush()
	}
	if err != nil {
		s.reportBackendLost(err)
		return fmt.Errorf("%w: writing: %w", errBackendLost, err)
	}
	return nil
}

// sha2FullAuth handles caching_sha2_password's "perform full
// authentication" step.
func (s *Session) sha2FullAuth(data []byte) error {
	clientTLS, backendTLS := s.client.IsTLS(), s.backend.IsTLS()
	if clientTLS == backendTLS {
		// Same transport security on both sides: the client's answer (a
		// cleartext password over TLS, or a public key request and then an
		// RSA-encrypted password) is exactly what the backend expects.
		return s.forwardAuthRound(data)
	}
	if !clientTLS && s.cfg.RSAKey == nil {
		// Refuse before the client starts the exchange, so that drivers
		// show this message instead of a protocol error.
		_ = s.client.WriteError(mysql.NewError(mysql.ErAccessDenied, "Switchyard: no RSA key to protect the password; connect with TLS"))
		return errors.New("no RSA key configured")
	}
	reply, err := s.askClient(data)
	if err != nil {
		return err
	}
	if clientTLS {
		// Cleartext from the client; the backend is plain TCP and wants
		// the password RSA-encrypted with its key.
		return s.encryptForBackend(reply)
	}
	// Plain TCP client, TLS backend: the client must not send the password
	// in clear, so it gets the proxy's public key.
	if len(reply) != 1 || reply[0] != mysql.CachingSha2RequestPubKey {
		_ = s.client.WriteError(mysql.NewError(mysql.ErAccessDenied,
			"Switchyard: caching_sha2_password full authentication needs TLS, or the client must request the server's public key (it used a preconfigured key the proxy cannot read)"))
		return errors.New("client sent an encrypted password for an unknown key")
	}
	der, err := x509.MarshalPKIXPublicKey(&s.cfg.RSAKey.PublicKey)
	if err != nil {
		return err
	}
	keyPacket := append([]byte{mysql.AuthMoreDataHeader}, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})...)
	enc, err := s.askClient(keyPacket)
	if err != nil {
		return err
	}
	plain, err := rsa.DecryptOAEP(sha1.New(), rand.Reader, s.cfg.RSAKey, enc, nil)
	if err != nil {
		_ = s.client.WriteError(mysql.NewError(mysql.ErAccessDenied, "Switchyard: cannot decrypt the password sent by the client"))
		return fmt.Errorf("decrypting client password: %w", err)
	}
	xorSalt(plain, s.backendSalt)
	return s.sendBackend(plain)
}

// encryptForBackend asks the backend for its public key and sends it the
// password (NUL-terminated, XORed with the scramble) encrypted with it.
func (s *Session) encryptForBackend(password []byte) error {
	if err := s.sendBackend([]byte{mysql.CachingSha2RequestPubKey}); err != nil {
		return err
	}
	data, err := s.backend.ReadPacket(maxAuthPacket)
	if err != nil {
		s.reportBackendLost(err)
		return fmt.Errorf("%w: reading the public key: %w", errBackendLost, err)
	}
	if len(data) < 2 || data[0] != mysql.AuthMoreDataHeader {
		if len(data) > 0 && data[0] == mysql.ErrHeader {
			_ = s.client.WritePacket(data)
			_ = s.client.Flush()
			return fmt.Errorf("backend refused the public key request: %w", mysql.ParseErr(data))
		}
		return s.protocolError("backend did not send its public key")
	}
	block, _ := pem.Decode(data[1:])
	if block == nil {
		return s.protocolError("backend sent an unreadable public key")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return s.protocolError("backend public key: " + err.Error())
	}
	rsaPub, ok := pub.(*rsa.PublicKey)
	if !ok {
		return s.protocolError("backend public key is not RSA")
	}
	plain := append([]byte(nil), password...)
	if len(plain) == 0 || plain[len(plain)-1] != 0 {
		plain = append(plain, 0)
	}
	xorSalt(plain, s.backendSalt)
	enc, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, rsaPub, plain, nil)
	if err != nil {
		return fmt.Errorf("encrypting password for backend: %w", err)
	}
	return s.sendBackend(enc)
}

func xorSalt(b, salt []byte) {
	if len(salt) == 0 {
		return
	}
	for i := range b {
		b[i] ^= salt[i%len(salt)]
	}
}

// protocolError reports a broken exchange to the client and returns it.
func (s *Session) protocolError(msg string) error {
	_ = s.client.WriteError(mysql.NewError(mysql.ErNetReadError, "Switchyard: protocol error from backend: %s", msg))
	return fmt.Errorf("protocol error: %s: %w", msg, errSessionEnded)
}

// errBackendLost marks errors where the backend connection broke.
var errBackendLost = errors.New("backend connection lost")
