package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNewCerts(t *testing.T) {
	c := NewCerts(t, t.TempDir())
	for _, p := range []string{c.CAFile, c.CAKey, c.ServerCert, c.ServerKey, c.ClientCert, c.ClientKey} {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		require.NotZero(t, fi.Size())
	}

	server := c.ServerTLSConfig().Certificates[0].Leaf
	for _, host := range []string{"127.0.0.1", "::1", "localhost"} {
		_, err := server.Verify(x509.VerifyOptions{DNSName: host, Roots: c.CertPool()})
		require.NoError(t, err, host)
	}
	client := c.ClientTLSConfig().Certificates[0].Leaf
	_, err := client.Verify(x509.VerifyOptions{Roots: c.CertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)

	other := NewCerts(t, "")
	_, err = server.Verify(x509.VerifyOptions{DNSName: "127.0.0.1", Roots: other.CertPool()})
	require.Error(t, err, "a second CA must not trust the first one's certificates")
}

func TestCertsHandshake(t *testing.T) {
	c := NewCerts(t, "")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", c.ServerTLSConfig())
	require.NoError(t, err)
	defer ln.Close()

	peer := make(chan []string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			peer <- nil
			return
		}
		defer conn.Close()
		tc := conn.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			peer <- nil
			return
		}
		var names []string
		for _, cert := range tc.ConnectionState().PeerCertificates {
			names = append(names, cert.Subject.CommonName)
		}
		peer <- names
	}()

	conn, err := tls.Dial("tcp", ln.Addr().String(), c.ClientTLSConfig())
	require.NoError(t, err)
	require.NoError(t, conn.Handshake())
	require.Equal(t, []string{"switchyard-test-client"}, <-peer)
	require.NoError(t, conn.Close())
	<-done
}
