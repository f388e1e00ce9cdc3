package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// CertRequest is a client certificate to issue.
type CertRequest struct {
	// CN is the identity etcd sees (the user name); required.
	CN string
	// Validity is how long the certificate is valid; required.
	Validity time.Duration
}

// IssueCert signs a client certificate for req.CN with the CA given as PEM
// (certificate and key). It refuses a CA that is not a CA, has expired, or
// does not match its key, and a certificate that would outlive the CA.
func IssueCert(caCertPEM, caKeyPEM []byte, req CertRequest, now time.Time) (certPEM, keyPEM []byte, err error) {
	if req.CN == "" {
		return nil, nil, errors.New("issue certificate: empty CN (the etcd user name)")
	}
	if req.Validity <= 0 {
		return nil, nil, fmt.Errorf("issue certificate for %s: validity %s: want a positive duration", req.CN, req.Validity)
	}
	blk, _ := pem.Decode(caCertPEM)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, nil, errors.New("issue certificate: CA file holds no PEM certificate")
	}
	ca, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("issue certificate: CA: %w", err)
	}
	switch {
	case !ca.IsCA:
		return nil, nil, fmt.Errorf("issue certificate: %q is not a CA certificate", ca.Subject.CommonName)
	case now.After(ca.NotAfter):
		return nil, nil, fmt.Errorf("issue certificate: CA %q expired at %s", ca.Subject.CommonName, ca.NotAfter.UTC().Format(time.RFC3339))
	}
	caKey, err := parseKey(caKeyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("issue certificate: CA key: %w", err)
	}
	if pub, ok := caKey.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(ca.PublicKey) {
		return nil, nil, fmt.Errorf("issue certificate: the CA key does not belong to CA %q", ca.Subject.CommonName)
	}
	notAfter := now.Add(req.Validity)
	if notAfter.After(ca.NotAfter) {
		return nil, nil, fmt.Errorf("issue certificate for %s: it would outlive the CA (expires %s); ask for less than %s", req.CN,
			ca.NotAfter.UTC().Format(time.RFC3339), ca.NotAfter.Sub(now).Round(time.Hour))
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("issue certificate for %s: key: %w", req.CN, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("issue certificate for %s: serial: %w", req.CN, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: req.CN},
		NotBefore:    now.Add(-5 * time.Minute), // small clock skew between hosts
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("issue certificate for %s: %w", req.CN, err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, nil, fmt.Errorf("issue certificate for %s: key: %w", req.CN, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// parseKey reads a PKCS#8, EC or RSA private key in PEM.
func parseKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	var k any
	var err error
	switch blk.Type {
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%T cannot sign", k)
	}
	return s, nil
}
