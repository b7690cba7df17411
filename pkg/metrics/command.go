package metrics

import pnet "github.com/switchyard-db/switchyard/pkg/proxy/net"

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
		pnet.ComQuery:            "query",
		pnet.ComStmtPrepare:      "stmt_prepare",
		pnet.ComStmtExecute:      "stmt_execute",
		pnet.ComStmtFetch:        "stmt_fetch",
		pnet.ComStmtClose:        "stmt_close",
		pnet.ComStmtReset:        "stmt_reset",
		pnet.ComStmtSendLongData: "stmt_send_long_data",
		pnet.ComPing:             "ping",
		pnet.ComInitDB:           "init_db",
		pnet.ComChangeUser:       "change_user",
		pnet.ComFieldList:        "field_list",
		pnet.ComResetConnection:  "reset_connection",
		pnet.ComSetOption:        "set_option",
		pnet.ComStatistics:       "statistics",
		pnet.ComQuit:             "quit",
	} {
		names[cmd] = name
	}
	return names
}()

// CommandName is the command label value of a MySQL command byte: "query",
// "stmt_execute", … or "other".
func CommandName(cmd byte) string { return commandNames[cmd] }
