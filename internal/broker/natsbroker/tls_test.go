package natsbroker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSigned writes a certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gatehouse test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(k)
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return cert, key
}

// TestTLS: an embedded server with a certificate requires TLS of network
// clients (its URL is tls://); a client that trusts the certificate
// connects, one that does not is refused; the in-process connection needs
// none.
func TestTLS(t *testing.T) {
	cert, key := selfSigned(t)
	creds := Credentials{Dir: t.TempDir()}
	users, err := MakeCredentials(creds.Dir, DefaultIDs())
	if err != nil {
		t.Fatal(err)
	}
	srv := openTest(t, Config{Listen: "127.0.0.1:0", Users: users, NKeyFile: creds.Seed("stack"), TLSCert: cert, TLSKey: key})
	if !strings.HasPrefix(srv.ClientURL(), "tls://") {
		t.Fatalf("client URL %s, want tls://", srv.ClientURL())
	}
	openTest(t, Config{URL: srv.ClientURL(), NKeyFile: creds.Seed("node"), TLSCA: cert})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if b, err := Open(ctx, Config{URL: srv.ClientURL(), NKeyFile: creds.Seed("node")}); err == nil {
		b.Close()
		t.Error("a client that does not trust the certificate connected")
	}
	plain := strings.Replace(srv.ClientURL(), "tls://", "nats://", 1)
	if b, err := Open(ctx, Config{URL: plain, NKeyFile: creds.Seed("node")}); err == nil {
		b.Close()
		t.Error("a client connected without TLS")
	}
}
