package shadow

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRefuse(t *testing.T) {
	cases := []struct {
		q      string
		refuse bool
	}{
		{"SELECT c FROM sbtest1 WHERE id=42", false},
		{"select * from t where name = 'now()' and x = `user`", false},
		{"SELECT user, version FROM accounts", false},
		{"SELECT 1;", false},
		{"SELECT id FROM t -- FOR UPDATE\n", false},
		{"SELECT * FROM t FOR UPDATE", true},
		{"SELECT * FROM t LOCK IN SHARE MODE", true},
		{"SELECT * FROM t FOR SHARE", true},
		{"SELECT a INTO @x FROM t", true},
		{"SELECT @x", true},
		{"SELECT @@version", true},
		{"SELECT NOW()", true},
		{"SELECT rand ()", true},
		{"SELECT CURRENT_TIMESTAMP", true},
		{"SELECT * FROM t WHERE d < CURDATE()", true},
		{"SELECT GET_LOCK('a', 1)", true},
		{"SELECT SLEEP(1)", true},
		{"SELECT CONNECTION_ID()", true},
		{"SELECT USER()", true},
		{"SELECT NEXTVAL(s)", true},
		{"SELECT NEXT VALUE FOR s", true},
		{"SELECT 1; DELETE FROM t", true},
		{"SELECT * FROM information_schema.processlist", true},
		{"SELECT /*!50000 SQL_NO_CACHE */ 1", true},
		{"SELECT 'it''s', \"a\\\"b\" FROM t", false},
	}
	for _, c := range cases {
		why := refuse([]byte(c.q))
		require.Equal(t, c.refuse, why != "", "%q: %q", c.q, why)
	}
}
