package backend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/router"
	"go.uber.org/zap"
)

// errSessionEnded marks failures already reported to the client.
var errSessionEnded = errors.New("session ended")

// handshake greets the client, reads its response, routes the session,
// connects to the backend and relays authentication until OK or ERR.
func (s *Session) handshake(ctx context.Context) error {
	_ = s.client.SetDeadline(s.handshakeDeadline())
	salt := mysql.NewSalt(20)
	o := s.offer()
	offer := o.capability
	if s.cfg.ServerTLS != nil {
		offer |= mysql.ClientSSL
	}
	greeting := mysql.AppendInitialHandshake(nil, &mysql.InitialHandshake{
		ServerVersion: o.version,
		ConnID:        uint32(s.id),
		Salt:          salt,
		Capability:    offer,
		ExtCapability: o.extCapability,
		Charset:       o.charset,
		Status:        mysql.ServerStatusAutocommit,
		AuthPlugin:    mysql.AuthNativePassword,
	})
	if err := s.client.WritePacket(greeting); err != nil {
		return err
	}
	if err := s.client.Flush(); err != nil {
		return err
	}
	data, err := s.client.ReadPacket(maxHandshakePacket)
	if err != nil {
		if errors.Is(err, mysql.ErrPacketTooLarge) {
			_ = s.client.WriteError(mysql.NewError(mysql.ErHandshakeError, "Bad handshake: %v", err))
		}
		return fmt.Errorf("reading handshake response: %w", err)
	}
	if mysql.IsSSLRequest(data) {
		if s.cfg.ServerTLS == nil {
			_ = s.client.WriteError(mysql.NewError(mysql.ErHandshakeError, "Bad handshake: TLS requested but not configured on the proxy"))
			return errors.New("client requested TLS, which is not configured")
		}
		if err := s.client.ServerTLSHandshake(s.cfg.ServerTLS); err != nil {
			return err
		}
		if data, err = s.client.ReadPacket(maxHandshakePacket); err != nil {
			return fmt.Errorf("reading handshake response after TLS: %w", err)
		}
	}
	resp, err := mysql.ParseHandshakeResponse(data)
	if err != nil {
		_ = s.client.WriteError(mysql.NewError(mysql.ErHandshakeError, "Bad handshake: %v", err))
		return err
	}
	if resp.Capability&mysql.ClientSSL != 0 && !s.client.IsTLS() {
		_ = s.client.WriteError(mysql.NewError(mysql.ErHandshakeError, "Bad handshake: SSL flag set without an SSL request"))
		return errors.New("client set CLIENT_SSL without TLS")
	}
	if resp.Capability&mysql.ClientPluginAuth == 0 {
		// Pass-through needs the backend's AuthSwitchRequest to reach a
		// client that understands it.
		_ = s.client.WriteError(&mysql.MySQLError{Code: mysql.ErNotSupportedAuthMode, State: "08004",
			Message: "Client does not support authentication protocol requested by server; consider upgrading MySQL client (Switchyard needs CLIENT_PLUGIN_AUTH)"})
		return errors.New("client lacks CLIENT_PLUGIN_AUTH")
	}
	// Whatever the client claims, it may only use what was offered.
	resp.Capability &= offer | mysql.ClientSSL
	if resp.Capability&mysql.ClientMySQL == 0 {
		s.clientExt = resp.ExtCapability & o.extCapability
	}
	s.clientCap = resp.Capability
	s.charset = resp.Charset
	s.zstdLevel = resp.ZstdLevel
	s.state.user, s.state.db = resp.User, resp.DB
	s.logUser = resp.User

	s.clientMaxPacket, s.clientAttrs = resp.MaxPacket, resp.Attrs
	if err := s.connectBackend(ctx, resp); err != nil {
		return err
	}
	ok, err := s.relayAuth(true)
	if err != nil || !ok {
		return err
	}
	_ = s.client.SetDeadline(time.Time{})
	_ = s.backend.SetDeadline(time.Time{})
	if err := s.client.SetCompression(compressionOf(s.clientCap), int(resp.ZstdLevel)); err != nil {
		return err
	}
	if err := s.backend.SetCompression(compressionOf(s.backendCap), int(resp.ZstdLevel)); err != nil {
		return err
	}
	// After compression started: the proxy's own statements are commands
	// like the client's.
	return s.startMigrationTracking()
}

func compressionOf(capability uint32) mysql.CompressAlgorithm {
	switch {
	case capability&mysql.ClientZstdCompression != 0:
		return mysql.CompressZstd
	case capability&mysql.ClientCompress != 0:
		return mysql.CompressZlib
	}
	return mysql.CompressNone
}

// connectBackend routes the session and sends the client's handshake
// response to the backend, trying other backends when one cannot be
// reached.
func (s *Session) connectBackend(ctx context.Context, resp *mysql.HandshakeResponse) error {
	s.ci.User, s.ci.DB = resp.User, resp.DB
	if st := s.client.TLSState(); st != nil {
		s.ci.ServerName = st.ServerName
	}
	ci := s.ci
	var exclude []string
	var lastErr error
	var full *mysql.MySQLError // the last backend's answer that it is full
	fullRetries := 0
	for {
		lease, err := s.router.Route(ci, exclude)
		if errors.Is(err, router.ErrNoRoute) {
			_ = s.client.WriteError(&mysql.MySQLError{Code: mysql.ErUnknown, State: "HY000", Message: "Switchyard: " + err.Error()})
			return fmt.Errorf("routing: %v: %w", err, errSessionEnded)
		}
		if err != nil && full != nil {
			// Every backend left is full: ask them all again a few times,
			// then the client hears the server's own refusal.
			if s.waitForSlot(ctx, &fullRetries) {
				exclude, full = exclude[:0], nil
				continue
			}
			_ = s.client.WriteError(full)
			return fmt.Errorf("every backend refused the connection: %w", full)
		}
		if err != nil {
			msg := err.Error()
			if lastErr != nil {
				msg = fmt.Sprintf("%v (last error: %v)", err, lastErr)
			}
			_ = s.client.WriteError(&mysql.MySQLError{Code: mysql.ErConnectToForeignDataSource, State: "08S01",
				Message: "Switchyard: cannot connect to a backend: " + msg})
			return fmt.Errorf("routing: %s: %w", msg, errSessionEnded)
		}
		err = s.openBackend(ctx, lease, resp)
		if err == nil {
			s.mu.Lock()
			s.lease = lease
			s.mu.Unlock()
			s.state.user = lease.User()
			// Before the client hears OK and can tell anyone its id.
			s.publishBackendIdent()
			if s.cfg.CommandMetrics != nil {
				s.obs = s.cfg.CommandMetrics(lease.Cluster())
			}
			return nil
		}
		var mismatch *errCapabilityMismatch
		if errors.As(err, &mismatch) {
			// Not a failure of the backend: it serves other clients.
			s.log(zap.InfoLevel, "backend cannot serve this client's protocol, trying another", zap.String("backend", lease.ID()), zap.Error(err))
			lease.Release()
			exclude = append(exclude, lease.ID())
			lastErr = err
			continue
		}
		var myErr *mysql.MySQLError
		if errors.As(err, &myErr) {
			lease.Release()
			if myErr.Code == mysql.ErCONCount {
				// A full server is up: another backend may have room.
				full = myErr
				exclude = append(exclude, lease.ID())
				continue
			}
			// Any other refusal (host blocked) the client hears as is.
			_ = s.client.WriteError(myErr)
			return fmt.Errorf("backend %s refused the connection: %w", lease.Addr(), err)
		}
		if errors.Is(err, errSessionEnded) {
			lease.Release()
			return err
		}
		s.log(zap.WarnLevel, "backend unreachable, trying another", zap.String("backend", lease.ID()), zap.Error(err))
		lease.Failed(err)
		exclude = append(exclude, lease.ID())
		lastErr = err
	}
}

// fullServerBackoff are the waits before asking the servers that answered
// ERR 1040 (max_connections reached, before any login) again, once every
// backend the session may use has answered so: 310 ms in all. A
// proxy holds connections to a server that its clients do not see (a
// health probe; a backend connection the server is still tearing down after
// its client left), so a client that fills max_connections exactly, which a
// direct client can, finds the server full through the proxy for a moment
// (go-sql-driver's TestConcurrent did, on a loaded machine). A server that
// stays full still answers 1040, at most this much later.
var fullServerBackoff = [...]time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond,
	80 * time.Millisecond, 160 * time.Millisecond}

// waitForSlot waits before the next attempt to log in on a full server; it
// returns false when the retries are used up, the wait would pass the
// handshake deadline, or ctx ends.
func (s *Session) waitForSlot(ctx context.Context, retries *int) bool {
	if *retries >= len(fullServerBackoff) {
		return false
	}
	wait := fullServerBackoff[*retries]
	*retries++
	if d := s.handshakeDeadline(); !d.IsZero() && time.Until(d) < wait {
		return false
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// openBackend dials the backend, reads its greeting, negotiates TLS and
// capabilities and sends the client's handshake response, naming an unknown
// plugin so that the backend challenges the client itself.
func (s *Session) openBackend(ctx context.Context, lease router.Lease, resp *mysql.HandshakeResponse) error {
	be, hs, caps, err := s.dialBackend(ctx, lease.Addr(), backendLogin{
		user: lease.User(), db: resp.DB, plugin: mysql.AuthUnknownPlugin, compress: true,
		auth: func([]byte) []byte { return resp.AuthData },
	})
	if err != nil {
		return err
	}
	// From here on the backend waits for the client's answers: the whole
	// login is bounded by the handshake deadline, not the connect timeout.
	_ = be.SetDeadline(s.handshakeDeadline())
	s.backendCap = caps
	s.backendExt, s.backendConnID = s.dialed.ext, s.dialed.connID
	s.dialed = dialedIdent{}
	s.backendSalt = hs.Salt
	s.tidb.on.Store(isTiDB(hs.ServerVersion))
	s.mu.Lock()
	s.backend = be
	s.mu.Unlock()
	s.watch = s.watchBackend(be.RawConn())
	s.logBackend = lease.ID()
	return nil
}

// backendLogin is what a handshake response to a backend says.
type backendLogin struct {
	user, db, plugin string
	// auth computes the auth data from the backend's greeting salt.
	auth func(salt []byte) []byte
	// compress negotiates the client's compression with the backend.
	compress bool
}

// dialedIdent is what dialBackend learnt of the connection it returned
// last beyond its capabilities: the backend's id for it (for KILL) and the
// MariaDB extensions negotiated. The session takes them when it makes that
// connection its backend.
type dialedIdent struct {
	be          *mysql.PacketIO
	connID, ext uint32
}

// dialBackend dials addr, reads its greeting, negotiates TLS and
// capabilities (from the client's) and sends a handshake response.
func (s *Session) dialBackend(ctx context.Context, addr string, login backendLogin) (*mysql.PacketIO, *mysql.InitialHandshake, uint32, error) {
	dctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, nil, 0, err
	}
	be := mysql.NewPacketIO(s.wrapConn(conn))
	fail := func(err error) (*mysql.PacketIO, *mysql.InitialHandshake, uint32, error) {
		_ = be.Close()
		return nil, nil, 0, err
	}
	_ = be.SetDeadline(time.Now().Add(s.cfg.ConnectTimeout))
	if s.cfg.BackendProxyProtocol {
		if err := s.writeProxyHeader(be, conn); err != nil {
			return fail(err)
		}
	}
	data, err := be.ReadPacket(maxHandshakePacket)
	if err != nil {
		return fail(fmt.Errorf("reading the greeting of backend %s: %w", addr, err))
	}
	hs, err := mysql.ParseInitialHandshake(data)
	if err != nil {
		return fail(err)
	}
	bc, bext, err := s.backendCapabilities(addr, hs)
	if err != nil {
		return fail(err)
	}
	if s.serving && bext != s.backendExt {
		// A session that moves keeps the MariaDB extensions it negotiated
		// (they change the packets' shapes); a backend offering others
		// cannot take it.
		return fail(fmt.Errorf("backend %s offers other MariaDB extensions (0x%x) than the session uses (0x%x)", addr, bext, s.backendExt))
	}
	if !login.compress {
		bc &^= mysql.ClientCompress | mysql.ClientZstdCompression
	}
	if login.db != "" {
		bc |= mysql.ClientConnectWithDB
	}
	useTLS := s.cfg.BackendTLS != nil && hs.Capability&mysql.ClientSSL != 0
	if s.cfg.RequireBackendTLS && !useTLS {
		return fail(mysql.NewError(mysql.ErSecureTransportRequired,
			"Switchyard: backend %s does not offer TLS and require-backend-tls is set", addr))
	}
	out := &mysql.HandshakeResponse{
		Capability:    bc,
		MaxPacket:     s.clientMaxPacket,
		Charset:       s.charset,
		User:          login.user,
		AuthData:      login.auth(hs.Salt),
		DB:            login.db,
		AuthPlugin:    login.plugin,
		Attrs:         s.clientAttrs,
		ZstdLevel:     s.zstdLevel,
		ExtCapability: bext,
	}
	if bc&mysql.ClientZstdCompression != 0 && out.ZstdLevel == 0 {
		out.ZstdLevel = 3
	}
	if useTLS {
		out.Capability |= mysql.ClientSSL
		if err := be.WritePacket(mysql.AppendSSLRequest(nil, out)); err != nil {
			return fail(err)
		}
		cfg := s.cfg.BackendTLS.Clone()
		if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
			host, _, _ := net.SplitHostPort(addr)
			cfg.ServerName = host
		}
		if err := be.ClientTLSHandshake(cfg); err != nil {
			return fail(fmt.Errorf("backend %s: %w", addr, err))
		}
	}
	if err := be.WritePacket(mysql.AppendHandshakeResponse(nil, out)); err != nil {
		return fail(err)
	}
	if err := be.Flush(); err != nil {
		return fail(err)
	}
	s.dialed = dialedIdent{be: be, connID: hs.ConnID, ext: bext}
	return be, hs, out.Capability, nil
}

func (s *Session) writeProxyHeader(be *mysql.PacketIO, conn net.Conn) error {
	dst, _ := conn.RemoteAddr().(*net.TCPAddr)
	if dst == nil {
		return errors.New("backend address is not TCP")
	}
	// Flushed at once: some servers read the header before they greet.
	if err := be.WriteRaw(mysql.AppendProxyHeaderV2(nil, s.ci.ClientAddr, dst.AddrPort())); err != nil {
		return err
	}
	return be.Flush()
}
