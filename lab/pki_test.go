package lab

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestWritePKI: the lab's CA signs a certificate per member that is valid
// for every name its clients check, and a client certificate that is only
// that; keys are private and the CA's key is not kept.
func TestWritePKI(t *testing.T) {
	t.Parallel()
	runDir := t.TempDir()
	ms := etcdMembers("x", runDir, 3, true, "")
	files, err := writePKI(filepath.Join(runDir, tlsDir), "x", ms)
	if err != nil {
		t.Fatal(err)
	}
	checkPKI(t, State{RunDir: runDir, Etcd: ms, TLS: &files})
	if _, err := writePKI(filepath.Join(runDir, tlsDir), "x", ms); err == nil {
		t.Error("a second writePKI overwrote the lab's certificates")
	}
}

// checkPKI checks the lab's certificates: keys private to root, each
// member's certificate valid for the names its clients use, signed by the CA.
func checkPKI(t *testing.T, st State) {
	t.Helper()
	read := func(path string) *x509.Certificate {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatalf("%s: no PEM block", path)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return c
	}
	roots := x509.NewCertPool()
	roots.AddCert(read(st.TLS.CA))
	for _, key := range []string{st.TLS.Key, st.Etcd[0].KeyFile, st.Etcd[2].KeyFile} {
		fi, err := os.Stat(key)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("key %s: mode %v (%v), want 0600", key, fi.Mode().Perm(), err)
		}
	}
	if _, err := os.Stat(filepath.Join(st.RunDir, tlsDir, "ca-key.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the CA key was written: %v", err)
	}
	for _, m := range st.Etcd {
		cert := read(m.CertFile)
		sock := filepath.Base(m.AdminURL)
		for _, name := range []string{"10.255.0.254", "127.0.0.1", "localhost", sock} {
			_, err := cert.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			if err != nil {
				t.Errorf("member %s certificate for %s: %v", m.Name, name, err)
			}
		}
	}
	cl := read(st.TLS.Cert)
	if _, err := cl.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if _, err := cl.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("the client certificate also serves as a server certificate")
	}
}
