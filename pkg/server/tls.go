package server

import (
	"crypto/tls"
	"fmt"

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
		pool, err := config.LoadCA(c.CA)
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
	cfg, err := c.ClientTLS()
	if err != nil {
		return nil, fmt.Errorf("security.backend-tls: %w", err)
	}
	return cfg, nil
}
