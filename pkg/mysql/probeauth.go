package mysql

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// maxAuthRounds bounds the packets a login may take: the answer to the
// greeting, an auth switch, caching_sha2_password's fast-auth or
// full-auth notice, its public key, and the result.
const maxAuthRounds = 6

// errAskedPassword is the reason of a login refused for want of a password
// the probe was not given.
var errAskedPassword = errors.New("the server asks for a password (set sql-password, or create the probe user without one)")

// login answers the server's greeting as user with password ("" for none)
// and reads the result, answering an auth switch and caching_sha2_password's
// full authentication (the server's RSA public key is asked for, as the
// connection is not TLS). Errors name the user, never the password.
func login(pio *PacketIO, hs *InitialHandshake, user, password string) error {
	plugin, salt := hs.AuthPlugin, hs.Salt
	if password != "" && plugin != AuthNativePassword && plugin != AuthCachingSha2 {
		// Start with native: a server whose account uses another plugin
		// answers with an auth switch naming it.
		plugin = AuthNativePassword
	}
	auth := Scramble(plugin, []byte(password), salt)
	resp := &HandshakeResponse{
		Capability: ClientProtocol41 | ClientSecureConnection | ClientPluginAuth |
			ClientLongPassword | ClientTransactions,
		MaxPacket:  1 << 24,
		Charset:    hs.Charset,
		User:       user,
		AuthData:   auth,
		AuthPlugin: plugin,
	}
	err := pio.WritePacket(AppendHandshakeResponse(nil, resp))
	clear(auth)
	if err != nil {
		return fmt.Errorf("send login: %w", err)
	}
	if err := pio.Flush(); err != nil {
		return fmt.Errorf("send login: %w", err)
	}
	for range maxAuthRounds {
		pkt, err := pio.ReadPacket(maxGreeting)
		if err != nil {
			return fmt.Errorf("login as %q: %w", user, err)
		}
		var reply []byte
		switch {
		case len(pkt) == 0:
			return fmt.Errorf("login as %q: empty answer", user)
		case pkt[0] == OKHeader:
			return nil
		case pkt[0] == ErrHeader:
			return fmt.Errorf("login as %q refused: %w", user, ParseErr(pkt))
		case pkt[0] == AuthSwitchHeader:
			sw, err := ParseAuthSwitchRequest(pkt)
			if err != nil {
				return fmt.Errorf("login as %q: %w", user, err)
			}
			if sw.Plugin != AuthNativePassword && sw.Plugin != AuthCachingSha2 {
				if password == "" {
					// Any plugin's answer for an empty password is empty.
					reply = []byte{}
					break
				}
				return fmt.Errorf("login as %q: the account uses %s; the probe speaks mysql_native_password and caching_sha2_password", user, sw.Plugin)
			}
			plugin, salt = sw.Plugin, sw.Data
			reply = Scramble(plugin, []byte(password), salt)
		case pkt[0] == AuthMoreDataHeader && plugin == AuthCachingSha2 && len(pkt) == 2 && pkt[1] == CachingSha2FastAuthOK:
			continue // the OK follows
		case pkt[0] == AuthMoreDataHeader && plugin == AuthCachingSha2 && len(pkt) == 2 && pkt[1] == CachingSha2PerformFullAuth:
			if password == "" {
				return fmt.Errorf("login as %q: %w", user, errAskedPassword)
			}
			reply = []byte{CachingSha2RequestPubKey}
		case pkt[0] == AuthMoreDataHeader && plugin == AuthCachingSha2 && len(pkt) > 2:
			// The public key we asked for.
			reply, err = encryptPassword(pkt[1:], password, salt)
			if err != nil {
				return fmt.Errorf("login as %q: %w", user, err)
			}
		default:
			return fmt.Errorf("login as %q: %w", user, errAskedPassword)
		}
		err = pio.WritePacket(reply)
		clear(reply)
		if err != nil {
			return fmt.Errorf("login as %q: %w", user, err)
		}
		if err := pio.Flush(); err != nil {
			return fmt.Errorf("login as %q: %w", user, err)
		}
	}
	return fmt.Errorf("login as %q: no result after %d packets", user, maxAuthRounds)
}

// Scramble is the answer of plugin (mysql_native_password, or
// caching_sha2_password's fast path) to the server's challenge salt (a
// trailing NUL and anything past 20 bytes are ignored); empty for an empty
// password, as every plugin expects. The caller owns password and may clear
// it afterwards; the intermediate hashes are cleared here.
func Scramble(plugin string, password, salt []byte) []byte {
	if len(password) == 0 {
		return []byte{}
	}
	if len(salt) > 20 {
		salt = salt[:20]
	}
	if plugin == AuthCachingSha2 {
		// SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + salt)
		stage1 := sha256.Sum256(password)
		stage2 := sha256.Sum256(stage1[:])
		h := sha256.New()
		h.Write(stage2[:])
		h.Write(salt)
		out := h.Sum(nil)
		for i := range out {
			out[i] ^= stage1[i]
		}
		clear(stage1[:])
		clear(stage2[:])
		return out
	}
	stage1 := sha1.Sum(password)
	out := NativeScramble(stage1[:], salt)
	clear(stage1[:])
	return out
}

// NativeScramble is mysql_native_password's answer from SHA1(pw), the form a
// server stores (as SHA1 of it) and a session migration recovers:
// SHA1(pw) XOR SHA1(salt + SHA1(SHA1(pw))).
func NativeScramble(stage1, salt []byte) []byte {
	stage2 := sha1.Sum(stage1)
	h := sha1.New()
	h.Write(salt)
	h.Write(stage2[:])
	out := h.Sum(nil)
	for i := range out {
		out[i] ^= stage1[i]
	}
	clear(stage2[:])
	return out
}

// encryptPassword is caching_sha2_password's full authentication over a
// connection without TLS: the NUL-terminated password XOR the salt,
// encrypted with the server's RSA public key (PEM) by OAEP with SHA-1.
func encryptPassword(keyPEM []byte, password string, salt []byte) ([]byte, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("the server's public key is not PEM")
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("the server's public key: %w", err)
	}
	pub, ok := key.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("the server's public key is not RSA")
	}
	if len(salt) > 20 {
		salt = salt[:20]
	}
	if len(salt) == 0 {
		return nil, errors.New("no challenge to answer")
	}
	plain := make([]byte, len(password)+1)
	copy(plain, password)
	for i := range plain {
		plain[i] ^= salt[i%len(salt)]
	}
	out, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, plain, nil)
	clear(plain)
	if err != nil {
		// The password is too long for the key; say so without it.
		return nil, errors.New("the password cannot be encrypted with the server's public key")
	}
	return out, nil
}
