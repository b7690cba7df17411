package metrics

import "github.com/switchyard-db/switchyard/pkg/mysql"

// commandOther labels every command byte without a name of its own. The
// command label stays bounded whatever clients send.
const commandOther = "other"

// commandNames maps each MySQL command byte to its label value. Only the
// commands a proxy client sends in practice get a name.
var commandNames = func() (names [256]string) {
	for i := range names {
		names[i] = commandOther
	}
	for cmd, name := range map[byte]string{
		mysql.ComQuery:            "query",
		mysql.ComStmtPrepare:      "stmt_prepare",
		mysql.ComStmtExecute:      "stmt_execute",
		mysql.ComStmtFetch:        "stmt_fetch",
		mysql.ComStmtClose:        "stmt_close",
		mysql.ComStmtReset:        "stmt_reset",
		mysql.ComStmtSendLongData: "stmt_send_long_data",
		mysql.ComPing:             "ping",
		mysql.ComInitDB:           "init_db",
		mysql.ComChangeUser:       "change_user",
		mysql.ComFieldList:        "field_list",
		mysql.ComResetConnection:  "reset_connection",
		mysql.ComSetOption:        "set_option",
		mysql.ComStatistics:       "statistics",
		mysql.ComQuit:             "quit",
	} {
		names[cmd] = name
	}
	return names
}()

// CommandName is the command label value of a MySQL command byte: "query",
// "stmt_execute", … or "other".
func CommandName(cmd byte) string { return commandNames[cmd] }
