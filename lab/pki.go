package lab

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// certValidity is how long the lab's certificates are valid: a lab lives
// for a test run or a demo, not for months.
const certValidity = 30 * 24 * time.Hour

// writePKI creates the lab's CA and signs a server certificate for each
// etcd member (which also serves as its peer client certificate) and one
// client certificate for the agents and the admin CLI. Certificates are
// written 0644, keys 0600; the CA's key is never written, so nothing can
// sign more certificates after Up. Member files go where ms names them.
func writePKI(dir, lab string, ms []Etcd) (TLSFiles, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return TLSFiles{}, fmt.Errorf("tls: %w", err)
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return TLSFiles{}, fmt.Errorf("tls: CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "skein lab " + lab + " CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return TLSFiles{}, fmt.Errorf("tls: CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return TLSFiles{}, fmt.Errorf("tls: CA certificate: %w", err)
	}
	files := TLSFiles{
		CA:   filepath.Join(dir, "ca.pem"),
		Cert: filepath.Join(dir, "client.pem"),
		Key:  filepath.Join(dir, "client-key.pem"),
	}
	if err := writePEM(files.CA, "CERTIFICATE", caDER, 0o644); err != nil {
		return TLSFiles{}, err
	}
	sign := func(tmpl *x509.Certificate, certPath, keyPath string) error {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return fmt.Errorf("tls: key for %s: %w", tmpl.Subject.CommonName, err)
		}
		tmpl.SerialNumber = serial()
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(certValidity)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			return fmt.Errorf("tls: certificate for %s: %w", tmpl.Subject.CommonName, err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return fmt.Errorf("tls: key for %s: %w", tmpl.Subject.CommonName, err)
		}
		if err := writePEM(keyPath, "EC PRIVATE KEY", kder, 0o600); err != nil {
			return err
		}
		return writePEM(certPath, "CERTIFICATE", der, 0o644)
	}
	for _, m := range ms {
		tmpl, err := serverTemplate(m)
		if err != nil {
			return TLSFiles{}, err
		}
		if err := sign(tmpl, m.CertFile, m.KeyFile); err != nil {
			return TLSFiles{}, err
		}
	}
	client := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "skein lab " + lab + " client"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if err := sign(client, files.Cert, files.Key); err != nil {
		return TLSFiles{}, err
	}
	return files, nil
}

// serverTemplate is member m's certificate: valid for its client and peer
// addresses, 127.0.0.1 and localhost, and for the name the etcd client
// checks on a unixs:// endpoint (the socket's file name). It is also the
// member's client certificate towards its peers.
func serverTemplate(m Etcd) (*x509.Certificate, error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: m.Name},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{"localhost", m.Name},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	for _, raw := range append(m.clientURLs(), m.PeerURL) {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("tls: member %s: URL %q: %w", m.Name, raw, err)
		}
		if u.Scheme == "unix" || u.Scheme == "unixs" {
			tmpl.DNSNames = append(tmpl.DNSNames, filepath.Base(u.Host+u.Path))
			continue
		}
		if ip := net.ParseIP(u.Hostname()); ip != nil && !ip.IsLoopback() {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		}
	}
	return tmpl, nil
}

// serial returns a random certificate serial number.
func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // crypto/rand never fails on Linux
	}
	return n
}

// writePEM writes one PEM block to path with mode perm, created with it so
// a key is never readable by others even for a moment.
func writePEM(path, typ string, der []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: typ, Bytes: der}); err != nil {
		_ = f.Close() // the encode error is the one to report
		return fmt.Errorf("tls: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("tls: write %s: %w", path, err)
	}
	return nil
}
