package backend

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// A backend that stops answering without closing its connection (a frozen
// or overloaded server, a host that lost its network without a reset)
// would keep a session waiting forever: TCP itself never gives up on a peer
// whose kernel still acknowledges. With Config.BackendReadTimeout set, every
// read of a backend's response during a command must see a packet within
// that time; otherwise the client gets an ERR packet saying so and the
// session ends, since the backend connection is then in an unknown state.
// Nothing reads the backend while the session is idle, so an idle session
// is not affected however long it stays idle.

// armBackendRead starts the wait for the backend's next packet. It is called
// at the start of each command and before each packet read of its response,
// so the limit is on the silence between packets, not on a whole result.
func (s *Session) armBackendRead() {
	if s.cfg.BackendReadTimeout > 0 && s.backend != nil {
		_ = s.backend.SetReadDeadline(time.Now().Add(s.cfg.BackendReadTimeout))
	}
}

// errBackendReadTimeout marks a backend that did not answer in time.
// isTimeout reports whether err is a read or write deadline passing.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

var errBackendReadTimeout = errors.New("no answer within proxy.backend-read-timeout")

// explainBackendRead names the configured timeout when err is the read
// deadline set by armBackendRead passing.
func (s *Session) explainBackendRead(err error) error {
	if s.cfg.BackendReadTimeout > 0 && isTimeout(err) {
		return fmt.Errorf("%w (%v): %w", errBackendReadTimeout, s.cfg.BackendReadTimeout, err)
	}
	return err
}
