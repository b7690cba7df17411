package testenv

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// IssueClientCert signs a client certificate (extended key usage clientAuth)
// with the CA, for a subject common name and optional DNS and URI subject
// alternative names, writes it and its key into Dir, and returns it loaded
// with the file paths. A test uses it to check how certificates map to roles.
func (c *Certs) IssueClientCert(t testing.TB, cn string, dnsNames, uris []string) (cert tls.Certificate, certFile, keyFile string) {
	t.Helper()
	return c.issue(t, cn, dnsNames, uris, nil, x509.ExtKeyUsageClientAuth)
}

// IssuePeerCert signs a certificate for 127.0.0.1 that is both a server and
// a client certificate, as a fleet node's API certificate is when the nodes
// call each other behind mTLS.
func (c *Certs) IssuePeerCert(t testing.TB, cn string) (cert tls.Certificate, certFile, keyFile string) {
	t.Helper()
	return c.issue(t, cn, []string{"localhost"}, nil, []net.IP{net.ParseIP("127.0.0.1")},
		x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
}

func (c *Certs) issue(t testing.TB, cn string, dnsNames, uris []string, ips []net.IP, usages ...x509.ExtKeyUsage) (cert tls.Certificate, certFile, keyFile string) {
	t.Helper()
	caPEM, err := os.ReadFile(c.CAKey)
	if err != nil {
		t.Fatalf("testenv: read CA key: %v", err)
	}
	block, _ := pem.Decode(caPEM)
	if block == nil {
		t.Fatalf("testenv: CA key %s is not PEM", c.CAKey)
	}
	caKey, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		t.Fatalf("testenv: parse CA key: %v", err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("testenv: generate key: %v", err)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: []string{"switchyard tests"}},
		NotBefore:   time.Now().Add(-time.Hour),
		NotAfter:    time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: usages,
		DNSNames:    dnsNames,
		IPAddresses: ips,
	}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatalf("testenv: URI SAN %q: %v", u, err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := createCert(tmpl, c.CA, key, caKey)
	if err != nil {
		t.Fatalf("testenv: sign client certificate: %v", err)
	}
	seq := tlsConfigSeq.Add(1)
	certFile = filepath.Join(c.Dir, fmt.Sprintf("client-%d-cert.pem", seq))
	keyFile = filepath.Join(c.Dir, fmt.Sprintf("client-%d-key.pem", seq))
	if err := os.WriteFile(certFile, pem.EncodeToMemory(certBlock(der)), 0o600); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(keyBlock(key)), 0o600); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if cert, err = tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return cert, certFile, keyFile
}
