package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

func makeCA(t *testing.T, notAfter time.Time, isCA bool) (certPEM, keyPEM []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"},
		NotBefore: notAfter.Add(-100 * 24 * time.Hour), NotAfter: notAfter, IsCA: isCA, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func TestIssueCert(t *testing.T) {
	t.Parallel()
	now := time.Now()
	ca, key := makeCA(t, now.Add(48*time.Hour), true)
	c, k, err := IssueCert(ca, key, CertRequest{CN: "alice", Validity: time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(c)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil || cert.Subject.CommonName != "alice" {
		t.Errorf("issued certificate CN %q does not verify as a client certificate: %v", cert.Subject.CommonName, err)
	}
	if _, err := parseKey(k); err != nil {
		t.Errorf("issued key: %v", err)
	}

	expired, expKey := makeCA(t, now.Add(-time.Hour), true)
	notCA, notCAKey := makeCA(t, now.Add(48*time.Hour), false)
	_, otherKey := makeCA(t, now.Add(48*time.Hour), true)
	for _, tc := range []struct {
		name    string
		ca, key []byte
		req     CertRequest
		want    string
	}{
		{"expired CA", expired, expKey, CertRequest{CN: "a", Validity: time.Minute}, "expired"},
		{"not a CA", notCA, notCAKey, CertRequest{CN: "a", Validity: time.Minute}, "not a CA"},
		{"key of another CA", ca, otherKey, CertRequest{CN: "a", Validity: time.Minute}, "does not belong"},
		{"outlives the CA", ca, key, CertRequest{CN: "a", Validity: 72 * time.Hour}, "outlive"},
		{"no CN", ca, key, CertRequest{Validity: time.Minute}, "empty CN"},
		{"garbage CA", []byte("x"), key, CertRequest{CN: "a", Validity: time.Minute}, "no PEM"},
	} {
		if _, _, err := IssueCert(tc.ca, tc.key, tc.req, now); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: IssueCert error %v, want one saying %q", tc.name, err, tc.want)
		}
	}
}
