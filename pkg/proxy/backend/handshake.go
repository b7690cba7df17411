package backend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	pnet "github.com/switchyard-db/switchyard/pkg/proxy/net"
	"github.com/switchyard-db/switchyard/pkg/router"
	"go.uber.org/zap"
)

// errSessionEnded marks failures already reported to the client.
var errSessionEnded = errors.New("session ended")

// handshake greets the client, reads its response, routes the session,
// connects to the backend and relays authentication until OK or ERR.
func (s *Session) handshake(ctx context.Context) error {
	if s.cfg.HandshakeTimeout > 0 {
		s.handshakeDeadline = time.Now().Add(s.cfg.HandshakeTimeout)
		_ = s.client.SetDeadline(s.handshakeDeadline)
	}
	salt := pnet.NewSalt(20)
	offer := proxyCapability
	if s.cfg.ServerTLS != nil {
		offer |= pnet.ClientSSL
	}
	greeting := pnet.AppendInitialHandshake(nil, &pnet.InitialHandshake{
		ServerVersion: s.cfg.ServerVersion,
		ConnID:        uint32(s.id),
		Salt:          salt,
		Capability:    offer,
		Charset:       pnet.DefaultCharset,
		Status:        pnet.ServerStatusAutocommit,
		AuthPlugin:    pnet.AuthNativePassword,
	})
	if err := s.client.WritePacket(greeting); err != nil {
		return err
	}
	if err := s.client.Flush(); err != nil {
		return err
	}
	data, err := s.client.ReadPacket(maxHandshakePacket)
	if err != nil {
		if errors.Is(err, pnet.ErrPacketTooLarge) {
			_ = s.client.WriteError(pnet.NewError(pnet.ErHandshakeError, "Bad handshake: %v", err))
		}
		return fmt.Errorf("reading handshake response: %w", err)
	}
	if pnet.IsSSLRequest(data) {
		if s.cfg.ServerTLS == nil {
			_ = s.client.WriteError(pnet.NewError(pnet.ErHandshakeError, "Bad handshake: TLS requested but not configured on the proxy"))
			return errors.New("client requested TLS, which is not configured")
		}
		if err := s.client.ServerTLSHandshake(s.cfg.ServerTLS); err != nil {
			return err
		}
		if data, err = s.client.ReadPacket(maxHandshakePacket); err != nil {
			return fmt.Errorf("reading handshake response after TLS: %w", err)
		}
	}
	resp, err := pnet.ParseHandshakeResponse(data)
	if err != nil {
		_ = s.client.WriteError(pnet.NewError(pnet.ErHandshakeError, "Bad handshake: %v", err))
		return err
	}
	if resp.Capability&pnet.ClientSSL != 0 && !s.client.IsTLS() {
		_ = s.client.WriteError(pnet.NewError(pnet.ErHandshakeError, "Bad handshake: SSL flag set without an SSL request"))
		return errors.New("client set CLIENT_SSL without TLS")
	}
	if resp.Capability&pnet.ClientPluginAuth == 0 {
		// Pass-through needs the backend's AuthSwitchRequest to reach a
		// client that understands it.
		_ = s.client.WriteError(&pnet.MySQLError{Code: pnet.ErNotSupportedAuthMode, State: "08004",
			Message: "Client does not support authentication protocol requested by server; consider upgrading MySQL client (Switchyard needs CLIENT_PLUGIN_AUTH)"})
		return errors.New("client lacks CLIENT_PLUGIN_AUTH")
	}
	// Whatever the client claims, it may only use what was offered.
	resp.Capability &= offer | pnet.ClientSSL
	s.clientCap = resp.Capability
	s.charset = resp.Charset
	s.state.user, s.state.db = resp.User, resp.DB
	s.lg = s.lg.With(zap.String("user", resp.User))

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
	return s.backend.SetCompression(compressionOf(s.backendCap), int(resp.ZstdLevel))
}

func compressionOf(capability uint32) pnet.CompressAlgorithm {
	switch {
	case capability&pnet.ClientZstdCompression != 0:
		return pnet.CompressZstd
	case capability&pnet.ClientCompress != 0:
		return pnet.CompressZlib
	}
	return pnet.CompressNone
}

// connectBackend routes the session and sends the client's handshake
// response to the backend, trying other backends when one cannot be
// reached.
func (s *Session) connectBackend(ctx context.Context, resp *pnet.HandshakeResponse) error {
	ci := router.ClientInfo{User: resp.User, DB: resp.DB, ClientAddr: s.clientAddr, LocalAddr: s.localAddr}
	if st := s.client.TLSState(); st != nil {
		ci.ServerName = st.ServerName
	}
	var exclude []string
	var lastErr error
	for {
		lease, err := s.router.Route(ci, exclude)
		if errors.Is(err, router.ErrNoRoute) {
			_ = s.client.WriteError(&pnet.MySQLError{Code: pnet.ErUnknown, State: "HY000", Message: "Switchyard: " + err.Error()})
			return fmt.Errorf("routing: %v: %w", err, errSessionEnded)
		}
		if err != nil {
			msg := err.Error()
			if lastErr != nil {
				msg = fmt.Sprintf("%v (last error: %v)", err, lastErr)
			}
			_ = s.client.WriteError(&pnet.MySQLError{Code: pnet.CrConnHostError, State: "08S01",
				Message: "Switchyard: cannot connect to a backend: " + msg})
			return fmt.Errorf("routing: %s: %w", msg, errSessionEnded)
		}
		err = s.openBackend(ctx, lease, resp)
		if err == nil {
			s.mu.Lock()
			s.lease = lease
			s.mu.Unlock()
			s.state.user = lease.User()
			if s.cfg.CommandMetrics != nil {
				s.obs = s.cfg.CommandMetrics(lease.Cluster())
			}
			return nil
		}
		var myErr *pnet.MySQLError
		if errors.As(err, &myErr) {
			// The backend answered with an error (too many connections,
			// host blocked): the client hears it as is.
			lease.Release()
			_ = s.client.WriteError(myErr)
			return fmt.Errorf("backend %s refused the connection: %w", lease.Addr(), err)
		}
		if errors.Is(err, errSessionEnded) {
			lease.Release()
			return err
		}
		s.lg.Warn("backend unreachable, trying another", zap.String("backend", lease.ID()), zap.Error(err))
		lease.Failed(err)
		exclude = append(exclude, lease.ID())
		lastErr = err
	}
}

// openBackend dials the backend, reads its greeting, negotiates TLS and
// capabilities and sends the handshake response.
func (s *Session) openBackend(ctx context.Context, lease router.Lease, resp *pnet.HandshakeResponse) error {
	dctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "tcp", lease.Addr())
	if err != nil {
		return err
	}
	be := pnet.NewPacketIO(conn)
	fail := func(err error) error {
		_ = be.Close()
		return err
	}
	_ = be.SetDeadline(time.Now().Add(s.cfg.ConnectTimeout))
	if s.cfg.BackendProxyProtocol {
		if err := s.writeProxyHeader(be, conn); err != nil {
			return fail(err)
		}
	}
	data, err := be.ReadPacket(maxHandshakePacket)
	if err != nil {
		return fail(fmt.Errorf("reading the greeting of backend %s: %w", lease.Addr(), err))
	}
	hs, err := pnet.ParseInitialHandshake(data)
	if err != nil {
		return fail(err)
	}
	if missing := s.clientCap & requiredOfBackend &^ hs.Capability; missing != 0 {
		return fail(pnet.NewError(pnet.ErHandshakeError,
			"Switchyard: backend %s (%s) lacks protocol capabilities 0x%x that the client uses", lease.Addr(), hs.ServerVersion, missing))
	}
	bc := s.clientCap & hs.Capability &^ (pnet.ClientSSL | pnet.ClientCompress | pnet.ClientZstdCompression)
	// Session tracking is always asked for, so that the proxy sees USE and
	// transaction state even when the client does not; OK packets are
	// rewritten for clients that did not ask for it.
	bc |= hs.Capability & pnet.ClientSessionTrack
	switch compressionOf(s.clientCap) {
	case pnet.CompressZstd:
		if hs.Capability&pnet.ClientZstdCompression != 0 {
			bc |= pnet.ClientZstdCompression
		} else {
			bc |= hs.Capability & pnet.ClientCompress
		}
	case pnet.CompressZlib:
		bc |= hs.Capability & pnet.ClientCompress
	}
	// The backend's greeting may also be an old-style one without plugin
	// auth; pass-through needs it.
	bc |= pnet.ClientPluginAuth
	useTLS := s.cfg.BackendTLS != nil && hs.Capability&pnet.ClientSSL != 0
	if s.cfg.RequireBackendTLS && !useTLS {
		return fail(pnet.NewError(pnet.ErSecureTransportRequired,
			"Switchyard: backend %s does not offer TLS and require-backend-tls is set", lease.Addr()))
	}
	out := &pnet.HandshakeResponse{
		Capability: bc,
		MaxPacket:  resp.MaxPacket,
		Charset:    resp.Charset,
		User:       lease.User(),
		AuthData:   resp.AuthData,
		DB:         resp.DB,
		AuthPlugin: pnet.AuthUnknownPlugin,
		Attrs:      resp.Attrs,
		ZstdLevel:  resp.ZstdLevel,
	}
	if bc&pnet.ClientZstdCompression != 0 && out.ZstdLevel == 0 {
		out.ZstdLevel = 3
	}
	if useTLS {
		out.Capability |= pnet.ClientSSL
		if err := be.WritePacket(pnet.AppendSSLRequest(nil, out)); err != nil {
			return fail(err)
		}
		cfg := s.cfg.BackendTLS.Clone()
		if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
			host, _, _ := net.SplitHostPort(lease.Addr())
			cfg.ServerName = host
		}
		if err := be.ClientTLSHandshake(cfg); err != nil {
			return fail(fmt.Errorf("backend %s: %w", lease.Addr(), err))
		}
	}
	if err := be.WritePacket(pnet.AppendHandshakeResponse(nil, out)); err != nil {
		return fail(err)
	}
	if err := be.Flush(); err != nil {
		return fail(err)
	}
	// From here on the backend waits for the client's answers: the whole
	// login is bounded by the handshake deadline, not the connect timeout.
	_ = be.SetDeadline(s.handshakeDeadline)
	s.backendCap = out.Capability
	s.backendSalt = hs.Salt
	s.mu.Lock()
	s.backend = be
	s.mu.Unlock()
	s.lg = s.lg.With(zap.String("backend", lease.ID()))
	return nil
}

func (s *Session) writeProxyHeader(be *pnet.PacketIO, conn net.Conn) error {
	dst, _ := conn.RemoteAddr().(*net.TCPAddr)
	if dst == nil {
		return errors.New("backend address is not TCP")
	}
	// Flushed at once: some servers read the header before they greet.
	if err := be.WriteRaw(pnet.AppendProxyHeaderV2(nil, s.clientAddr, dst.AddrPort())); err != nil {
		return err
	}
	return be.Flush()
}
