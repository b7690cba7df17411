package backend

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/switchyard-db/switchyard/pkg/mysql"
)

// nativeCredential is what lets the proxy log in again as a
// mysql_native_password user without knowing the password.
//
// At login the client answers the backend's challenge: scramble =
// SHA1(pw) XOR SHA1(salt + SHA1(SHA1(pw))). The server stores
// SHA1(SHA1(pw)) ("*HEX" in mysql.user.authentication_string), which the
// migration account can read; with it, SHA1(pw) = scramble XOR SHA1(salt +
// stored), checked by SHA1(SHA1(pw)) == stored. SHA1(pw) alone is enough to
// answer any later challenge. It is kept in memory for the life of the
// session and zeroed when the session ends; it is never logged or shown.
type nativeCredential struct {
	salt, scramble []byte // the login's challenge and answer
	stage1         []byte // SHA1(pw) once recovered
	empty          bool   // the user has no password
}

func (c *nativeCredential) zero() {
	for _, b := range [][]byte{c.salt, c.scramble, c.stage1} {
		clear(b)
	}
	*c = nativeCredential{}
}

// captured reports whether a login exchange was recorded.
func (c *nativeCredential) captured() bool { return c.empty || len(c.scramble) == sha1.Size }

// capture records the challenge and the client's answer of a native login.
func (c *nativeCredential) capture(salt, reply []byte) {
	c.zero()
	salt = bytes.TrimRight(salt, "\x00")
	if len(reply) == 0 {
		c.empty = true
		return
	}
	if len(reply) != sha1.Size || len(salt) == 0 {
		return
	}
	c.salt = append([]byte(nil), salt...)
	c.scramble = append([]byte(nil), reply...)
}

// recoverFrom tries each stored hash ("*" + 40 hex digits) and keeps
// SHA1(pw) when one matches the recorded exchange.
func (c *nativeCredential) recoverFrom(stored [][]byte) bool {
	for _, h := range stored {
		if len(h) != 41 || h[0] != '*' {
			continue
		}
		st := make([]byte, sha1.Size)
		if _, err := hex.Decode(st, h[1:]); err != nil {
			continue
		}
		defer clear(st)
		hs := sha1.New()
		hs.Write(c.salt)
		hs.Write(st)
		cand := hs.Sum(nil)
		for i := range cand {
			cand[i] ^= c.scramble[i]
		}
		check := sha1.Sum(cand)
		if subtle.ConstantTimeCompare(check[:], st) == 1 {
			c.stage1 = cand
			clear(c.scramble)
			clear(c.salt)
			c.scramble, c.salt = nil, nil
			return true
		}
		clear(cand)
	}
	return false
}

// answer computes the native scramble for a new challenge.
func (c *nativeCredential) answer(salt []byte) []byte {
	if c.empty {
		return nil
	}
	return mysql.NativeScramble(c.stage1, bytes.TrimRight(salt, "\x00"))
}

// ensureCredential recovers SHA1(pw) through the migration account on addr
// (a backend of the session's cluster; all share their users), once per
// session. A failure is sticky and becomes the reason the session cannot
// move.
func (s *Session) ensureCredential(ctx context.Context, addr string) error {
	c := &s.mig.rec.cred
	if c.empty || c.stage1 != nil {
		return nil
	}
	if !c.captured() {
		s.mig.rec.credErr = fmt.Sprintf("the login of user %s could not be recorded for re-use", s.state.user)
		return errors.New(s.mig.rec.credErr)
	}
	user, pw, ok := s.cfg.MigrationAccount(s.lease.Cluster())
	if !ok {
		return errors.New(s.accountMissing(s.lease.Cluster()))
	}
	stage1 := sha1.Sum([]byte(pw))
	admin, caps, err := s.loginNative(ctx, addr, user, "", &nativeCredential{stage1: stage1[:]}, false)
	clear(stage1[:])
	if err != nil {
		return fmt.Errorf("migration account %s cannot log in to %s: %w", user, addr, err)
	}
	defer func() {
		admin.ResetSequence()
		_ = admin.WritePacket([]byte{mysql.ComQuit})
		_ = admin.Flush()
		_ = admin.Close()
	}()
	_ = admin.SetDeadline(time.Now().Add(s.cfg.ConnectTimeout))
	q := "SELECT authentication_string FROM mysql.user WHERE user = " + quoteString(s.state.user) +
		" AND plugin IN ('mysql_native_password', '')"
	_, rows, err := queryText(admin, caps, q)
	if err != nil {
		return fmt.Errorf("migration account %s cannot read mysql.user on %s: %w", user, addr, err)
	}
	var hashes [][]byte
	for _, r := range rows {
		if len(r) == 1 && r[0] != nil {
			hashes = append(hashes, r[0])
		}
	}
	recovered := c.recoverFrom(hashes)
	for _, h := range hashes {
		clear(h) // the stored hashes are secrets too
	}
	if !recovered {
		s.mig.rec.credErr = fmt.Sprintf("no stored mysql_native_password hash of user %s matches its login (password changed since?)", s.state.user)
		return errors.New(s.mig.rec.credErr)
	}
	return nil
}

// loginNative dials addr and logs in as user with a native credential,
// answering an auth switch to mysql_native_password. It returns the
// connection (compressed like the client's when compress is set) and its
// capabilities.
func (s *Session) loginNative(ctx context.Context, addr, user, db string, cred *nativeCredential, compress bool) (*mysql.PacketIO, uint32, error) {
	be, _, caps, err := s.dialBackend(ctx, addr, backendLogin{
		user: user, db: db, plugin: mysql.AuthNativePassword, auth: cred.answer, compress: compress,
	})
	if err != nil {
		return nil, 0, err
	}
	fail := func(err error) (*mysql.PacketIO, uint32, error) {
		_ = be.Close()
		return nil, 0, err
	}
	for {
		data, err := be.ReadPacket(maxAuthPacket)
		if err != nil {
			return fail(err)
		}
		if len(data) == 0 {
			return fail(errors.New("empty packet during login"))
		}
		switch data[0] {
		case mysql.OKHeader:
			_ = be.SetDeadline(time.Time{})
			// Compression starts right after the login's OK.
			if err := be.SetCompression(compressionOf(caps), int(s.zstdLevel)); err != nil {
				return fail(err)
			}
			return be, caps, nil
		case mysql.ErrHeader:
			return fail(mysql.ParseErr(data))
		case mysql.AuthSwitchHeader:
			req, err := mysql.ParseAuthSwitchRequest(data)
			if err != nil {
				return fail(err)
			}
			if req.Plugin != mysql.AuthNativePassword {
				return fail(fmt.Errorf("the server asks for %q instead of mysql_native_password", req.Plugin))
			}
			if err := be.WritePacket(cred.answer(req.Data)); err != nil {
				return fail(err)
			}
			if err := be.Flush(); err != nil {
				return fail(err)
			}
		default:
			return fail(fmt.Errorf("unexpected packet 0x%02x during login", data[0]))
		}
	}
}

// quoteString renders s as a SQL string literal that reads the same under
// any sql_mode: printable ASCII without quotes or backslashes as is,
// anything else as a hex literal converted to utf8mb4.
func quoteString(s string) string {
	plain := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '\'' || c == '\\' || c == '"' {
			plain = false
			break
		}
	}
	if plain {
		return "'" + s + "'"
	}
	if s == "" {
		return "''"
	}
	return "CONVERT(X'" + strings.ToUpper(hex.EncodeToString([]byte(s))) + "' USING utf8mb4)"
}
