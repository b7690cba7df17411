package testenv

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Certs is a fresh CA with one server and one client certificate signed by it, written as PEM
// files. Every NewCerts call makes new keys, so two Certs never trust each other.
type Certs struct {
	Dir        string
	CAFile     string // CA certificate
	CAKey      string // CA private key, for tests that sign more certificates
	ServerCert string // for 127.0.0.1, ::1 and localhost
	ServerKey  string
	ClientCert string
	ClientKey  string

	CA     *x509.Certificate
	pool   *x509.CertPool
	server tls.Certificate
	client tls.Certificate
}

// NewCerts generates the certificates into dir (a new t.TempDir() when dir is "").
func NewCerts(t testing.TB, dir string) *Certs {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	c, err := generateCerts(dir)
	if err != nil {
		t.Fatalf("testenv: generate certificates: %v", err)
	}
	return c
}

// CertPool holds only the CA.
func (c *Certs) CertPool() *x509.CertPool { return c.pool }

// ClientTLSConfig trusts the CA and presents the client certificate. ServerName is left empty:
// crypto/tls and go-sql-driver fill it from the dialled address, and the server certificate
// covers 127.0.0.1.
func (c *Certs) ClientTLSConfig() *tls.Config {
	return &tls.Config{
		RootCAs:      c.pool,
		Certificates: []tls.Certificate{c.client},
		MinVersion:   tls.VersionTLS12,
	}
}

// ServerTLSConfig serves the server certificate and verifies client certificates that are
// offered, for in-process servers in tests.
func (c *Certs) ServerTLSConfig() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{c.server},
		ClientCAs:    c.pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
		MinVersion:   tls.VersionTLS12,
	}
}

var tlsConfigSeq atomic.Uint64

// RegisterMySQLTLS registers ClientTLSConfig with go-sql-driver under a unique name, for DSN
// strings ("?tls=<name>"), and deregisters it when the test ends. Code that builds a
// mysql.Config can set its TLS field to ClientTLSConfig() instead.
func (c *Certs) RegisterMySQLTLS(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("testenv-%d", tlsConfigSeq.Add(1))
	if err := mysql.RegisterTLSConfig(name, c.ClientTLSConfig()); err != nil {
		t.Fatalf("testenv: register TLS config: %v", err)
	}
	t.Cleanup(func() { mysql.DeregisterTLSConfig(name) })
	return name
}

func generateCerts(dir string) (*Certs, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	c := &Certs{
		Dir:        dir,
		CAFile:     filepath.Join(dir, "ca.pem"),
		CAKey:      filepath.Join(dir, "ca-key.pem"),
		ServerCert: filepath.Join(dir, "server-cert.pem"),
		ServerKey:  filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client-cert.pem"),
		ClientKey:  filepath.Join(dir, "client-key.pem"),
	}
	now := time.Now()

	caKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "switchyard test CA", Organization: []string{"switchyard tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := createCert(caTmpl, caTmpl, caKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	if c.CA, err = x509.ParseCertificate(caDER); err != nil {
		return nil, err
	}
	c.pool = x509.NewCertPool()
	c.pool.AddCert(c.CA)

	leaf := func(cn string, usage x509.ExtKeyUsage, ips []net.IP, dns []string) (der []byte, key *rsa.PrivateKey, err error) {
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return nil, nil, err
		}
		tmpl := &x509.Certificate{
			Subject:     pkix.Name{CommonName: cn, Organization: []string{"switchyard tests"}},
			NotBefore:   now.Add(-time.Hour),
			NotAfter:    now.Add(10 * 365 * 24 * time.Hour),
			KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: ips,
			DNSNames:    dns,
		}
		der, err = createCert(tmpl, c.CA, key, caKey)
		return der, key, err
	}
	serverDER, serverKey, err := leaf("localhost", x509.ExtKeyUsageServerAuth,
		[]net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback}, []string{"localhost"})
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	clientDER, clientKey, err := leaf("switchyard-test-client", x509.ExtKeyUsageClientAuth, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}

	for _, f := range []struct {
		path  string
		block *pem.Block
	}{
		{c.CAFile, certBlock(caDER)},
		{c.CAKey, keyBlock(caKey)},
		{c.ServerCert, certBlock(serverDER)},
		{c.ServerKey, keyBlock(serverKey)},
		{c.ClientCert, certBlock(clientDER)},
		{c.ClientKey, keyBlock(clientKey)},
	} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(f.block), 0o600); err != nil {
			return nil, err
		}
	}
	if c.server, err = tls.LoadX509KeyPair(c.ServerCert, c.ServerKey); err != nil {
		return nil, err
	}
	if c.client, err = tls.LoadX509KeyPair(c.ClientCert, c.ClientKey); err != nil {
		return nil, err
	}
	return c, nil
}

func createCert(tmpl, parent *x509.Certificate, key, parentKey *rsa.PrivateKey) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	return x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
}

func certBlock(der []byte) *pem.Block { return &pem.Block{Type: "CERTIFICATE", Bytes: der} }

// keyBlock uses PKCS#1 ("RSA PRIVATE KEY"), which every OpenSSL and wolfSSL build of MariaDB reads.
func keyBlock(key *rsa.PrivateKey) *pem.Block {
	return &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}
}
