package config

import (
	"net"
	"net/netip"
	"slices"
	"strings"
)

// API configures the HTTP status and admin API.
//
// Every request has a role: none, read or admin. A token sent as
// "Authorization: Bearer <token>" gives the role of the token; a client
// certificate verified against TLS.CA gives the role ClientCerts maps it to.
// Reads need the read role, changes the admin role, and only the endpoints in
// PublicEndpoints answer without any credential.
type API struct {
	// Addr is the listen address; empty disables the API. The default is
	// loopback only: an API on any other address needs a credential (a token
	// or client certificates), or the config is refused.
	Addr string `toml:"addr"`
	// Token is the admin token: it allows every endpoint, changes included.
	// Without it (and without admin client certificates) the API refuses
	// every change.
	Token string `toml:"token"`
	// ReadToken allows every endpoint that only reads: the status page,
	// sessions, the config (secrets redacted), pprof.
	ReadToken string `toml:"read-token"`
	// PublicEndpoints answer without a credential; it may only hold the
	// paths in DefaultPublicEndpoints (an empty list closes them all).
	PublicEndpoints []string `toml:"public-endpoints"`
	// TLS serves the API over HTTPS when cert and key are set. A CA makes
	// the API verify client certificates against it (mTLS).
	TLS TLSConfig `toml:"tls"`
	// ClientCerts maps verified client certificates to roles.
	ClientCerts ClientCerts `toml:"client-certs"`
}

// ClientCerts maps a client certificate to a role by its identity: a
// certificate matches a name when its subject common name, or one of its DNS
// or URI subject alternative names, is exactly that name. Admin wins over
// read. Certificates that match nothing get no role.
type ClientCerts struct {
	Admin []string `toml:"admin"`
	Read  []string `toml:"read"`
}

// DefaultPublicEndpoints are the endpoints that answer without a credential
// by default: what load balancers, Prometheus and leader discovery call.
var DefaultPublicEndpoints = []string{"/livez", "/readyz", "/metrics", "/api/v1/ha/leader"}

// RedactedSecret is what GET /api/v1/config shows instead of a secret. A
// config that holds it as a token was copied from there unchanged, and is
// refused.
const RedactedSecret = "<redacted>"

// MTLS reports whether the API verifies client certificates.
func (a API) MTLS() bool { return a.TLS.CA != "" }

// HasCredential reports whether any way to authenticate is configured.
func (a API) HasCredential() bool {
	return a.Token != "" || a.ReadToken != "" || a.MTLS()
}

// IsLoopbackAddr reports whether a listen address (host:port) only accepts
// connections from this host: a loopback IP or "localhost". An empty host
// means every interface.
func IsLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

func (a API) check(v *validator) {
	if a.Addr != "" {
		if reason := checkHostPort(a.Addr, 0, false); reason != "" {
			v.addf("api.addr", "api.addr %q: %s", a.Addr, reason)
		} else if !IsLoopbackAddr(a.Addr) && !a.HasCredential() {
			v.addf("api.addr", "api.addr %q listens beyond this host with no credential, so anyone who can reach it could read sessions and the config: set api.token (and api.read-token), or client certificates (api.tls.ca and api.client-certs), or listen on 127.0.0.1", a.Addr)
		}
	}
	checkToken(v, "api.token", a.Token)
	checkToken(v, "api.read-token", a.ReadToken)
	if a.Token != "" && a.ReadToken == a.Token {
		v.addf("api.read-token", "api.read-token must differ from api.token: the read token is the one handed out for looking only")
	}
	for i, p := range a.PublicEndpoints {
		if !slices.Contains(DefaultPublicEndpoints, p) {
			v.addf("api.public-endpoints", "api.public-endpoints[%d] %q: only %s can be public", i, p, strings.Join(DefaultPublicEndpoints, ", "))
		}
	}
	a.TLS.check(v, "api.tls")
	if a.TLS.SkipVerify {
		v.addf("api.tls.skip-verify", "api.tls.skip-verify: not supported; client certificates are verified against api.tls.ca")
	}
	if a.MTLS() && !a.TLS.HasCert() {
		v.addf("api.tls.ca", "api.tls.ca verifies client certificates, which needs HTTPS: set api.tls.cert and api.tls.key")
	}
	certs := len(a.ClientCerts.Admin) + len(a.ClientCerts.Read)
	switch {
	case certs > 0 && !a.MTLS():
		v.addf("api.client-certs", "api.client-certs needs api.tls.ca to verify client certificates against")
	case certs == 0 && a.MTLS():
		v.addf("api.tls.ca", "api.tls.ca verifies client certificates, but api.client-certs maps none to a role (admin or read)")
	}
	for _, l := range []struct {
		key   string
		names []string
	}{{"api.client-certs.admin", a.ClientCerts.Admin}, {"api.client-certs.read", a.ClientCerts.Read}} {
		for i, n := range l.names {
			if n == "" {
				v.addf(l.key, "%s[%d] must not be empty", l.key, i)
			}
		}
	}
}

// checkToken refuses tokens that cannot be sent in a header as written, and
// the placeholder GET /api/v1/config shows. The token itself is never part
// of the message.
func checkToken(v *validator, key, tok string) {
	if tok == "" {
		return
	}
	if tok == RedactedSecret {
		v.addf(key, "%s is %q, the placeholder GET /api/v1/config shows: write the real token", key, RedactedSecret)
		return
	}
	for _, r := range tok {
		if r <= ' ' || r >= 0x7f {
			v.addf(key, "%s must be printable ASCII without spaces (generate one with: openssl rand -hex 32)", key)
			return
		}
	}
}
