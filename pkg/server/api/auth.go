package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strings"

	libconfig "github.com/switchyard-db/switchyard/lib/config"
)

// Role is what a request may do. Roles are ordered: admin may do everything
// read may.
type Role int

// Roles, from least to most.
const (
	// RoleNone is an anonymous request: only public endpoints answer it.
	RoleNone Role = iota
	// RoleRead may call every endpoint that only reads.
	RoleRead
	// RoleAdmin may also change things, and vote as a fleet member.
	RoleAdmin
)

func (r Role) String() string {
	switch r {
	case RoleRead:
		return "read"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

// Auth decides the role of a request from its credentials: a bearer token,
// HTTP Basic (for browsers), or a verified client certificate. It keeps only
// digests of the tokens.
type Auth struct {
	admin, read         *[sha256.Size]byte // nil when not configured
	certAdmin, certRead []string
	public              []string
}

// NewAuth builds the API's authentication from its config section.
func NewAuth(c libconfig.API) *Auth {
	a := &Auth{public: slices.Clone(c.PublicEndpoints)}
	if c.Token != "" {
		d := sha256.Sum256([]byte(c.Token))
		a.admin = &d
	}
	if c.ReadToken != "" {
		d := sha256.Sum256([]byte(c.ReadToken))
		a.read = &d
	}
	if c.MTLS() {
		a.certAdmin, a.certRead = slices.Clone(c.ClientCerts.Admin), slices.Clone(c.ClientCerts.Read)
	}
	return a
}

// TLSConfig is the API's server TLS config, or nil for plain HTTP. With
// api.tls.ca it asks for a client certificate and verifies one that is
// offered; a client without one can still use a token.
func TLSConfig(c libconfig.API) (*tls.Config, error) {
	if !c.TLS.HasCert() {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLS.Cert, c.TLS.Key)
	if err != nil {
		return nil, fmt.Errorf("api.tls: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.MTLS() {
		pool, err := libconfig.LoadCA(c.TLS.CA)
		if err != nil {
			return nil, fmt.Errorf("api.tls.ca: %w", err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

// isPublic reports whether path answers without a credential.
func (a *Auth) isPublic(path string) bool { return slices.Contains(a.public, path) }

// canGrant reports whether any configured credential has the role.
func (a *Auth) canGrant(need Role) bool {
	switch need {
	case RoleNone:
		return true
	case RoleRead:
		return a.read != nil || len(a.certRead) > 0 || a.canGrant(RoleAdmin)
	default:
		return a.admin != nil || len(a.certAdmin) > 0
	}
}

// roleOf returns the request's role. bad is true when the request carries
// an Authorization header that is not a valid credential: such a request is
// refused even if its certificate has a role, so that a typo is noticed.
func (a *Auth) roleOf(r *http.Request) (role Role, bad bool) {
	role = a.certRole(r.TLS)
	h := r.Header.Get("Authorization")
	if h == "" {
		return role, false
	}
	scheme, cred, _ := strings.Cut(h, " ")
	var tokRole Role
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		tokRole = a.tokenRole([]byte(cred))
	case strings.EqualFold(scheme, "Basic"):
		// Browsers: any user name, the token as password. They send it to
		// this origin on their own, whichever page asks, so it never grants
		// more than read: a page elsewhere cannot change anything through a
		// signed-in browser.
		raw, err := base64.StdEncoding.DecodeString(cred)
		if err != nil {
			return RoleNone, true
		}
		_, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return RoleNone, true
		}
		tokRole = min(a.tokenRole([]byte(pass)), RoleRead)
		clear(raw)
	}
	if tokRole == RoleNone {
		return RoleNone, true
	}
	return max(role, tokRole), false
}

// tokenRole compares tok with both tokens in constant time. Digests are
// compared, so that neither the length nor the content of a token shows in
// the timing.
func (a *Auth) tokenRole(tok []byte) Role {
	d := sha256.Sum256(tok)
	isAdmin := a.admin != nil && subtle.ConstantTimeCompare(d[:], a.admin[:]) == 1
	isRead := a.read != nil && subtle.ConstantTimeCompare(d[:], a.read[:]) == 1
	switch {
	case isAdmin:
		return RoleAdmin
	case isRead:
		return RoleRead
	}
	return RoleNone
}

// certRole maps a verified client certificate to its role. Only a
// certificate that verified against api.tls.ca counts.
func (a *Auth) certRole(cs *tls.ConnectionState) Role {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return RoleNone
	}
	names := CertNames(cs.VerifiedChains[0][0])
	matches := func(list []string) bool {
		return slices.ContainsFunc(names, func(n string) bool { return slices.Contains(list, n) })
	}
	switch {
	case matches(a.certAdmin):
		return RoleAdmin
	case matches(a.certRead):
		return RoleRead
	}
	return RoleNone
}

// CertNames are the identities api.client-certs matches: the subject
// common name, then every DNS and URI subject alternative name.
func CertNames(c *x509.Certificate) []string {
	var out []string
	if c.Subject.CommonName != "" {
		out = append(out, c.Subject.CommonName)
	}
	out = append(out, c.DNSNames...)
	for _, u := range c.URIs {
		out = append(out, u.String())
	}
	return out
}

// require lets a request through to h only with a role of at least need.
func (s *Server) require(need Role, h http.HandlerFunc) http.HandlerFunc {
	if need == RoleNone {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.auth.canGrant(need) {
			// Nothing could authenticate: say what to configure.
			if need == RoleAdmin {
				writeError(w, http.StatusForbidden, "NO_ADMIN_CREDENTIAL",
					"changes through the API are disabled because no admin credential is configured: set api.token (or api.client-certs.admin) and restart the proxy")
				return
			}
			writeError(w, http.StatusForbidden, "NO_READ_CREDENTIAL",
				"this endpoint needs a credential and none is configured: set api.read-token or api.token (or api.client-certs) and restart the proxy")
			return
		}
		got, bad := s.auth.roleOf(r)
		if bad || got == RoleNone {
			unauthorized(w, r)
			return
		}
		if got < need {
			writeError(w, http.StatusForbidden, "FORBIDDEN",
				"this endpoint needs the "+need.String()+" role: the admin token as a bearer token, or an admin client certificate")
			return
		}
		h(w, r)
	}
}

// readOrPublic is read, or no role when path is a public endpoint.
func (s *Server) readOrPublic(path string) Role {
	if s.auth.isPublic(path) {
		return RoleNone
	}
	return RoleRead
}

// unauthorized answers a missing or wrong credential, without saying which.
// A browser asking for a page gets a Basic challenge, so that it asks its
// user for the token; API clients get a bearer challenge, so that a page's
// own fetches never pop up a login dialog.
func unauthorized(w http.ResponseWriter, r *http.Request) {
	if strings.Contains(r.Header.Get("Accept"), "text/html") {
		w.Header().Set("WWW-Authenticate", `Basic realm="switchyard", charset="UTF-8"`)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write(signInHTML)
		return
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="switchyard"`)
	writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
}

// signInHTML is what a browser shows when the user cancels the login dialog.
var signInHTML = []byte(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Switchyard: sign in</title></head>
<body id="sign-in" data-state="unauthorized">
<h1>Switchyard: sign in</h1>
<p>This page needs the API's read token. Reload the page and, when the browser asks,
enter any user name and the token (<code>api.read-token</code>) as the password.</p>
</body></html>
`)
