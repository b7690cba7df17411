package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/switchyard-db/switchyard/lib/config"
)

// serverTLS builds the TLS config offered to clients, or nil.
func serverTLS(c config.TLSConfig) (*tls.Config, error) {
	if !c.HasCert() {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		return nil, fmt.Errorf("security.server-tls: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	switch {
	case c.CA != "":
		// A CA means client certificates are how clients are let in.
		pool, err := loadCA(c.CA)
		if err != nil {
			return nil, fmt.Errorf("security.server-tls: %w", err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	case c.SkipVerify:
		cfg.ClientAuth = tls.RequireAnyClientCert
	}
	return cfg, nil
}

// backendTLS builds the TLS config used towards backends, or nil when
// backend TLS is not configured.
func backendTLS(c config.TLSConfig, required bool) (*tls.Config, error) {
	if !c.Enabled() && !required {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.SkipVerify}
	if c.CA != "" {
		pool, err := loadCA(c.CA)
		if err != nil {
			return nil, fmt.Errorf("security.backend-tls: %w", err)
		}
		cfg.RootCAs = pool
	}
	if c.HasCert() {
		cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("security.backend-tls: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func loadCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificates found", path)
	}
	return pool, nil
}
