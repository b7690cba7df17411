//go:build !unix

package backend

import "net"

// Without MSG_PEEK an idle session does not watch its backend; it learns of a
// closed backend at its next command, as before.
const peekSupported = false

func waitReadable(net.Conn) bool { return false }
