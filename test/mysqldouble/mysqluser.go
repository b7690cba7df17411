package mysqldouble

import (
	"crypto/sha1"
	"encoding/hex"
	"strings"
)

// storedHashQuery is how Switchyard's migration account reads a user's stored
// mysql_native_password hash (pkg/proxy/backend credential.go).
const storedHashQuery = "SELECT authentication_string FROM mysql.user WHERE user = "

// storedNativeHash answers storedHashQuery the way MariaDB does for the
// accounts of Config.NativeUsers: one row holding "*" and the upper-case hex of
// SHA1(SHA1(password)), or no row for an unknown user (or one without a
// password, whose authentication_string MariaDB leaves empty).
func (c *session) storedNativeHash(q string) error {
	rest := strings.TrimSpace(q[len(storedHashQuery):])
	user := rest
	if i := strings.Index(strings.ToUpper(rest), " AND "); i >= 0 {
		user = rest[:i]
	}
	user = strings.ReplaceAll(unquote(strings.TrimSpace(user)), "''", "'")
	var rows [][]string
	if pw, ok := c.srv.cfg.NativeUsers[user]; ok && pw != "" {
		stage1 := sha1.Sum([]byte(pw))
		stage2 := sha1.Sum(stage1[:])
		rows = append(rows, []string{"*" + strings.ToUpper(hex.EncodeToString(stage2[:]))})
	}
	return c.writeRows([]string{"authentication_string"}, typeVarString, rows)
}
