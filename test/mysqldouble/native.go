package mysqldouble

import (
	"crypto/sha1"
	"crypto/subtle"
)

// nativeAccount is what MySQL stores for a mysql_native_password account: SHA1(SHA1(pw)),
// never the password itself.
type nativeAccount struct {
	emptyPassword bool
	stage2        [sha1.Size]byte
}

func nativeAccounts(users map[string]string) map[string]nativeAccount {
	out := make(map[string]nativeAccount, len(users))
	for user, password := range users {
		stage1 := sha1.Sum([]byte(password))
		out[user] = nativeAccount{emptyPassword: password == "", stage2: sha1.Sum(stage1[:])}
	}
	return out
}

// nativePassword runs the server side of mysql_native_password. plugin and authResp are what
// the client's handshake response carried for the greeting's scramble. A client that
// answered for another plugin is switched to mysql_native_password with a fresh scramble; a
// client without CLIENT_PLUGIN_AUTH cannot be switched, and such (pre-plugin) clients always
// answer with the native 4.1 scramble, so its answer is taken as is.
func (c *session) nativePassword(acct nativeAccount, plugin string, scramble, authResp []byte) error {
	if plugin != pluginNative && c.caps&capPluginAuth != 0 {
		scramble = newScramble()
		c.srv.stats.authSwitches.Add(1)
		if err := c.pc.writePacket(authSwitchRequest(pluginNative, scramble)); err != nil {
			return err
		}
		var err error
		if authResp, err = c.readAuthPacket(); err != nil {
			return err
		}
	}
	switch {
	case len(authResp) == 0:
		// The client claims an empty password.
		if !acct.emptyPassword {
			return c.deny(false)
		}
	case acct.emptyPassword, !nativeMatches(acct.stage2, scramble, authResp):
		return c.deny(true)
	}
	c.srv.stats.nativeAuth.Add(1)
	return c.pc.writePacket(okPacket(hdrOK, c.caps, statusAutocommit, nil))
}

// nativeMatches recovers SHA1(pw) from the client's token
// XOR(SHA1(pw), SHA1(scramble || SHA1(SHA1(pw)))) and checks that it hashes to the stored
// SHA1(SHA1(pw)).
func nativeMatches(stage2 [sha1.Size]byte, scramble, token []byte) bool {
	if len(token) != sha1.Size {
		return false
	}
	h := sha1.New()
	h.Write(scramble)
	h.Write(stage2[:])
	mask := h.Sum(nil)
	stage1 := make([]byte, sha1.Size)
	for i := range stage1 {
		stage1[i] = token[i] ^ mask[i]
	}
	got := sha1.Sum(stage1)
	return subtle.ConstantTimeCompare(got[:], stage2[:]) == 1
}
