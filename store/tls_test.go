package store

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skeinnet/skein/api"
)

// testPKI holds the PEM files of a throwaway CA and a server and a client
// certificate it signed.
type testPKI struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	now := time.Now()
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "skein test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage) (certPath, keyPath string) {
		k := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
			DNSNames:     []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(cn+".crt", "CERTIFICATE", der), write(cn+".key", "EC PRIVATE KEY", kder)
	}
	p := testPKI{CA: write("ca.crt", "CERTIFICATE", caDER)}
	p.ServerCert, p.ServerKey = leaf(2, "server", x509.ExtKeyUsageServerAuth)
	p.ClientCert, p.ClientKey = leaf(3, "client", x509.ExtKeyUsageClientAuth)
	return p
}

func TestTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short: needs an embedded etcd")
	}
	pki := newTestPKI(t)
	e, err := StartEmbedded(ctxTimeout(t), EmbeddedConfig{
		Dir:           t.TempDir(),
		CertFile:      pki.ServerCert,
		KeyFile:       pki.ServerKey,
		ClientCAFile:  pki.CA,
		UnsafeNoFsync: true,
		Log:           testLog(t),
	})
	if err != nil {
		t.Fatalf("StartEmbedded with TLS: %v", err)
	}
	t.Cleanup(e.Close)
	eps := e.Endpoints()
	if !strings.HasPrefix(eps[0], "https://") {
		t.Fatalf("Endpoints = %v, want https://", eps)
	}

	c, err := New(ctxTimeout(t), Config{Endpoints: eps, CAFile: pki.CA, CertFile: pki.ClientCert, KeyFile: pki.ClientKey, Log: testLog(t)})
	if err != nil {
		t.Fatalf("New with a client certificate: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	ctx := ctxTimeout(t)
	if err := c.PutNode(ctx, api.Node{Name: "a"}); err != nil {
		t.Fatalf("PutNode over TLS: %v", err)
	}
	if n, err := c.GetNode(ctx, "a"); err != nil || n.Name != "a" {
		t.Errorf("GetNode over TLS = %+v, %v", n, err)
	}

	// Each error names the endpoint, the likely cause and the flag that
	// fixes it, and comes at once rather than after the dial timeout.
	plain := startEtcd(t).Endpoints()[0]
	other := newTestPKI(t)
	httpsOnPlain := strings.Replace(plain, "http://", "https://", 1)
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr []string
	}{
		{"no client certificate", Config{Endpoints: eps, CAFile: pki.CA}, []string{"asks for a client certificate", "--etcd-cert and --etcd-key"}},
		{"client certificate of another CA", Config{Endpoints: eps, CAFile: pki.CA, CertFile: other.ClientCert, KeyFile: other.ClientKey}, []string{"refused the client certificate", other.ClientCert}},
		{"unknown CA", Config{Endpoints: eps}, []string{"unknown authority", "set --etcd-ca"}},
		{"wrong CA", Config{Endpoints: eps, CAFile: other.CA, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}, []string{"not signed by --etcd-ca " + other.CA}},
		{"http endpoint with TLS flags", Config{Endpoints: []string{strings.Replace(eps[0], "https", "http", 1)}, CAFile: pki.CA, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}, []string{"use https://"}},
		{"http endpoint on a TLS server", Config{Endpoints: []string{strings.Replace(eps[0], "https", "http", 1)}}, []string{"speaks TLS", "use https://"}},
		{"https endpoint on a plain server", Config{Endpoints: []string{httpsOnPlain}, CAFile: pki.CA}, []string{"plain HTTP", "use http://"}},
		{"certificate without key", Config{Endpoints: eps, CAFile: pki.CA, CertFile: pki.ClientCert}, []string{"--etcd-cert " + pki.ClientCert + " given without --etcd-key"}},
		{"key without certificate", Config{Endpoints: eps, CAFile: pki.CA, KeyFile: pki.ClientKey}, []string{"--etcd-key " + pki.ClientKey + " given without --etcd-cert"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const dialTimeout = 10 * time.Second
			tc.cfg.DialTimeout = dialTimeout
			start := time.Now()
			c, err := New(t.Context(), tc.cfg)
			took := time.Since(start)
			if err == nil {
				_ = c.Close() // the test already failed
				t.Fatalf("New succeeded")
			}
			for _, w := range append(tc.wantErr, "127.0.0.1") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("New: %v\nwant an error containing %q", err, w)
				}
			}
			if took > dialTimeout/4 {
				t.Errorf("New took %s to fail (dial timeout %s): a TLS mismatch should fail at once", took, dialTimeout)
			}
			t.Logf("%s: %v", took.Round(time.Millisecond), err)
		})
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"no TLS", Config{Endpoints: []string{"http://127.0.0.1:2379"}}, ""},
		{"CA only", Config{CAFile: "ca.pem"}, ""},
		{"certificate and key", Config{CertFile: "c.pem", KeyFile: "k.pem"}, ""},
		{"key without certificate", Config{KeyFile: "k.pem"}, "--etcd-key k.pem given without --etcd-cert"},
		{"certificate without key", Config{CertFile: "c.pem", CAFile: "ca.pem"}, "--etcd-cert c.pem given without --etcd-key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Errorf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Validate = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestErrorsNameEndpoint: an etcd call that fails after New (etcd gone)
// names the endpoint, and the error still matches etcd's sentinels.
func TestErrorsNameEndpoint(t *testing.T) {
	e := startEtcd(t)
	c := newClient(t, e)
	ep := e.Endpoints()[0]
	e.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	_, err := c.ListNodes(ctx)
	if err == nil || !strings.Contains(err.Error(), ep) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ListNodes with etcd gone = %v, want a deadline error naming %s", err, ep)
	}
	if _, err := c.PutNodeIf(ctx, api.Node{Name: "a"}, 0); err == nil || !strings.Contains(err.Error(), ep) {
		t.Errorf("PutNodeIf (a transaction) with etcd gone = %v, want an error naming %s", err, ep)
	}
	if _, err := c.Etcd().Grant(ctx, 10); err == nil || !strings.Contains(err.Error(), ep) {
		t.Errorf("Grant (the heartbeat's lease) with etcd gone = %v, want an error naming %s", err, ep)
	}
}
