package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/proxy/backend"
	"github.com/switchyard-db/switchyard/pkg/router"
	"go.uber.org/zap"
)

// Options configure the SQL server.
type Options struct {
	Addr           string
	MaxConnections int // 0: unlimited
	// ProxyProtocolTrusted lists the sources that must send a PROXY v2
	// header; empty disables the PROXY protocol.
	ProxyProtocolTrusted []netip.Prefix
	// GracefulWait keeps accepting for this long after shutdown starts, so
	// load balancers notice the proxy going away before it stops listening.
	GracefulWait time.Duration
	// GracefulCloseTimeout bounds how long sessions may take to reach a
	// transaction boundary during shutdown.
	GracefulCloseTimeout time.Duration
	Session              *backend.Config
}

// Server accepts clients and owns their sessions.
type Server struct {
	lg     *zap.Logger
	opts   Options
	router router.Router

	ln     net.Listener // the main listener (Options.Addr)
	nextID atomic.Uint64
	count  atomic.Int64
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	sessions map[uint64]*backend.Session
	closing  bool
	extra    map[string]net.Listener // route ports, by address
	drains   map[*Drain]struct{}     // drains with sessions still open
}

// New builds a server; nothing listens until Start.
func New(lg *zap.Logger, opts Options, r router.Router) *Server {
	s := &Server{lg: lg, opts: opts, router: r, sessions: map[uint64]*backend.Session{}, extra: map[string]net.Listener{},
		drains: map[*Drain]struct{}{}}
	// Connection ids start far above the ids backends give out, so that a
	// backend id (from CONNECTION_ID()) is not taken for another session's
	// by KILL (pkg/proxy/backend/kill.go).
	s.nextID.Store(FirstConnID - 1)
	return s
}

// FirstConnID is the first connection id the proxy gives out (2^31).
const FirstConnID = 1 << 31

// SessionByID returns the live session with the given connection id, or
// nil (backend.SessionLookup, for KILL).
func (s *Server) SessionByID(id uint64) *backend.Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[id]
}

// Start listens and starts the accept loop.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", s.opts.Addr, err)
	}
	s.ln = ln
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.acceptLoop(ln)
	s.lg.Info("SQL listener started", zap.Stringer("addr", ln.Addr()))
	return nil
}

// SetExtraListeners makes the extra listeners (route ports) exactly addrs:
// it opens the missing ones and closes the others. Closing a listener does
// not touch the sessions it accepted. An address that cannot be opened is
// reported and the rest still applied. Call it after Start.
func (s *Server) SetExtraListeners(addrs []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return errors.New("server is shutting down")
	}
	want := make(map[string]bool, len(addrs))
	var errs []error
	for _, a := range addrs {
		want[a] = true
		if s.extra[a] != nil {
			continue
		}
		ln, err := net.Listen("tcp", a)
		if err != nil {
			errs = append(errs, fmt.Errorf("listening on %s: %w", a, err))
			continue
		}
		s.extra[a] = ln
		s.wg.Add(1)
		go s.acceptLoop(ln)
		s.lg.Info("SQL listener started", zap.Stringer("addr", ln.Addr()))
	}
	for a, ln := range s.extra {
		if !want[a] {
			_ = ln.Close()
			delete(s.extra, a)
			s.lg.Info("SQL listener closed", zap.String("addr", a))
		}
	}
	return errors.Join(errs...)
}

// ExtraAddrs returns the addresses of the extra listeners.
func (s *Server) ExtraAddrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]net.Addr, 0, len(s.extra))
	for _, ln := range s.extra {
		out = append(out, ln.Addr())
	}
	return out
}

// closeListeners closes every listener. The caller holds mu.
func (s *Server) closeListeners() {
	_ = s.ln.Close()
	for a, ln := range s.extra {
		_ = ln.Close()
		delete(s.extra, a)
	}
}

// Addr returns the listening address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// SessionCount returns the number of live sessions.
func (s *Server) SessionCount() int { return int(s.count.Load()) }

// Sessions returns a snapshot of the live sessions.
func (s *Server) Sessions() []backend.Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]backend.Info, 0, len(s.sessions))
	for _, ss := range s.sessions {
		out = append(out, ss.Info())
	}
	return out
}

// RangeRouted calls f for each live session that reached a backend, under
// the lock that admits new sessions: f must be quick (the rebalancer
// collects its sessions this way ten times a second, without a slice of
// its own per round).
func (s *Server) RangeRouted(f func(*backend.Session)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ss := range s.sessions {
		if _, b := ss.Placement(); b != "" {
			f(ss)
		}
	}
}

// ClusterSessions returns the live sessions routed to cluster.
func (s *Server) ClusterSessions(cluster string) []*backend.Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*backend.Session
	for _, ss := range s.sessions {
		if ss.Info().Cluster == cluster {
			out = append(out, ss)
		}
	}
	return out
}

func (s *Server) acceptLoop(ln net.Listener) {
	defer s.wg.Done()
	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off instead of
			// spinning, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.lg.Warn("accept failed", zap.Error(err), zap.Duration("retry_in", delay))
			time.Sleep(delay)
			continue
		}
		delay = 0
		s.wg.Add(1)
		go s.handle(conn)
	}
}

// handle runs one connection: limits, PROXY header, then the session. The
// session can outlive this goroutine (an idle session parks without one):
// its end is accounted in the callback Run calls.
func (s *Server) handle(conn net.Conn) {
	sess := s.admit(conn)
	if sess == nil {
		s.wg.Done()
		return
	}
	id := sess.ID()
	sess.Run(s.ctx, func() {
		s.mu.Lock()
		delete(s.sessions, id)
		for d := range s.drains {
			if d.ended(id) {
				delete(s.drains, d)
			}
		}
		s.mu.Unlock()
		s.count.Add(-1)
		s.wg.Done()
	})
}

// admit applies the connection limit and the PROXY header, and registers a
// session for conn; nil when the connection was refused.
func (s *Server) admit(conn net.Conn) *backend.Session {
	if n := s.count.Add(1); s.opts.MaxConnections > 0 && n > int64(s.opts.MaxConnections) {
		s.count.Add(-1)
		s.refuse(conn, mysql.NewError(mysql.ErCONCount, "Too many connections"))
		return nil
	}
	remote := addrPort(conn.RemoteAddr())
	clientAddr := remote
	if s.trusted(remote.Addr()) {
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		hdr, err := mysql.ReadProxyHeaderV2(conn)
		if err != nil {
			s.count.Add(-1)
			s.lg.Warn("bad PROXY protocol header from a trusted source", zap.Stringer("remote", remote), zap.Error(err))
			s.refuse(conn, mysql.NewError(mysql.ErHandshakeError, "Bad handshake: invalid PROXY protocol header: %v", err))
			return nil
		}
		_ = conn.SetReadDeadline(time.Time{})
		if hdr.Src.IsValid() {
			clientAddr = hdr.Src
		}
	}

	id := s.nextID.Add(1)
	sess := backend.NewSession(id, conn, clientAddr, s.opts.Session, s.router, s.lg)
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		s.count.Add(-1)
		s.refuse(conn, mysql.NewError(mysql.ErServerShutdown, "Server shutdown in progress"))
		return nil
	}
	s.sessions[id] = sess
	s.mu.Unlock()
	return sess
}

func (s *Server) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.opts.ProxyProtocolTrusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// refuse sends an ERR packet in place of the greeting and closes.
func (s *Server) refuse(conn net.Conn, e *mysql.MySQLError) {
	// The ERR goes out instead of the greeting, before the client said
	// which protocol it speaks: as MariaDB and MySQL servers send it, with
	// no SQL state (MySQL's C client would read "#08004" into the message).
	e.NoState = true
	_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
	p := mysql.NewPacketIO(conn)
	_ = p.WriteError(e)
	p.Linger(500 * time.Millisecond)
	_ = conn.Close()
	p.Release()
}

func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// Shutdown stops the server gracefully: it keeps accepting for
// GracefulWait, closes the listener, asks every session to end at its next
// transaction boundary and force-closes those still open after
// GracefulCloseTimeout (or when ctx ends).
func (s *Server) Shutdown(ctx context.Context) {
	if s.opts.GracefulWait > 0 {
		s.lg.Info("shutting down: still accepting", zap.Duration("graceful_wait", s.opts.GracefulWait))
		select {
		case <-time.After(s.opts.GracefulWait):
		case <-ctx.Done():
		}
	}
	s.mu.Lock()
	s.closeListeners()
	s.closing = true
	s.mu.Unlock()
	// No session starts after closing: the drain takes every one.
	d := s.Drain(func(*backend.Session) bool { return true }, s.opts.GracefulCloseTimeout, nil)
	s.lg.Info("shutting down: draining sessions", zap.Int("sessions", d.Sessions()))
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-d.Expired():
	case <-ctx.Done():
		d.Expire()
	}
	// Ask the drain, not which channel won: the sessions the deadline
	// closes can all end (done) before Expired is closed, and the
	// operator must still read that sessions were cut.
	if n := d.Forced(); n > 0 {
		s.lg.Warn("shutting down: closed sessions that did not finish in time", zap.Int("sessions", n))
	}
	s.cancel()
	<-done
}

// Close stops everything immediately.
func (s *Server) Close() {
	s.mu.Lock()
	s.closeListeners()
	s.closing = true
	for _, ss := range s.sessions {
		ss.Close()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}
