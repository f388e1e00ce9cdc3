//go:build e2e

package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/audit"
	"github.com/skeinnet/skein/lab"
	"github.com/skeinnet/skein/store"
)

// authLabName is the TLS lab of the roles test, named after the suite's
// lab so that parallel runs with their own SKEIN_E2E_LAB never collide.
var authLabName = labName + "a"

// TestAuthRoles: on a lab whose etcd authenticates clients by TLS
// certificate, `skein auth setup` (run twice: the second run changes
// nothing) enables etcd auth with Skein's roles, and every role is tried
// against every kind of CLI write. An allowed write lands with its audit
// record; a denied one says "permission denied: role X cannot write Y" and
// changes nothing. Agents keep working. Bad input (an unknown role, an
// expired certificate, one from a CA etcd does not trust) is refused
// clearly.
func TestAuthRoles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	l := upAuthLab(ctx, t)
	env := l.EtcdEnv()
	sk := func(user string, args ...string) opsResult {
		t.Helper()
		cmd := exec.CommandContext(ctx, opsBin(), args...)
		cmd.Env = append(append(os.Environ(), env...), "SKEIN_ETCD_USER="+user)
		if user != "" {
			cmd.Env = append(cmd.Env, "SKEIN_ETCD_PASSWORD=pw-"+user)
		}
		return runCmd(t, cmd)
	}
	admin, err := audit.CertCN(l.EtcdTLS().Cert)
	if err != nil {
		t.Fatal(err)
	}

	r := sk("", "auth", "setup")
	if r.code != 0 || !strings.Contains(r.stdout, "auth: enabled") || !strings.Contains(r.stdout, "user "+admin+": ") {
		t.Fatalf("auth setup:\n%s", r)
	}
	r = sk("", "auth", "setup")
	if r.code != 0 || !strings.Contains(r.stdout, "auth: already enabled") || strings.Count(r.stdout, ": unchanged") != 4 {
		t.Errorf("second auth setup: want every role unchanged and auth already enabled\n%s", r)
	}
	if r := sk("", "auth", "grant", "mallory", "superuser"); r.code == 0 || !strings.Contains(r.stderr, `role "superuser": unknown role`) {
		t.Errorf("grant of an unknown role:\n%s", r)
	}
	roles := map[string]string{"vera": "viewer", "paul": "policy-admin", "tina": "policy-admin", "nora": "network-admin", "ned": "node"}
	for u, role := range roles {
		args := []string{"auth", "grant", u, role, "--password", "pw-" + u}
		if u == "tina" {
			args = append(args, "--namespaces", "team-a")
		}
		if r := sk("", args...); r.code != 0 {
			t.Fatalf("grant %s %s:\n%s", u, role, r)
		}
	}
	if r := sk("", "auth", "list"); r.code != 0 || !strings.Contains(r.stdout, "tina") || !strings.Contains(r.stdout, "team-a") {
		t.Errorf("auth list:\n%s", r)
	}

	root := l.StoreConfig()
	cl, err := store.New(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close() //nolint:errcheck // test teardown
	dir := t.TempDir()
	polFile := func(ns string) string {
		p := filepath.Join(dir, ns+".yaml")
		doc := "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: " + ns + "}\nspec: {podSelector: {matchLabels: {app: none}}}\n"
		if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	type write struct {
		name, key string
		args      []string
	}
	writes := []write{
		{"policy team-a", "policies/NetworkPolicy/team-a/p", []string{"policy", "apply", "-f", polFile("team-a")}},
		{"policy team-b", "policies/NetworkPolicy/team-b/p", []string{"policy", "apply", "-f", polFile("team-b")}},
		{"namespace label", "namespaces/team-a", []string{"namespace", "label", "team-a", "tier=gold"}},
		{"bgp peer", "bgppeers/tor", []string{"bgp", "peer", "add", "tor", "--peer-ip", "192.0.2.1", "--asn", "65001"}},
		{"node delete", "nodes/ghost", []string{"node", "delete", "ghost"}},
	}
	allowed := map[string][]string{
		"vera": nil,
		"paul": {"policy team-a", "policy team-b", "namespace label"},
		"tina": {"policy team-a", "namespace label"},
		"nora": {"policy team-a", "policy team-b", "namespace label", "bgp peer", "node delete"},
		// The CLI records every write; an agent's identity has no audit
		// area, so it changes nothing through the CLI.
		"ned": nil,
	}
	for _, u := range []string{"vera", "paul", "tina", "nora", "ned"} {
		if r := sk(u, "policy", "list"); r.code != 0 {
			t.Errorf("%s (%s) cannot read policies:\n%s", u, roles[u], r)
		}
		for _, w := range writes {
			resetKey(ctx, t, cl, w.key)
			recs := countAudit(ctx, t, cl, u)
			r := sk(u, w.args...)
			ok := contains(allowed[u], w.name)
			has := keyHas(ctx, t, cl, w.key)
			switch {
			case ok && r.code != 0:
				t.Errorf("%s (%s): %s denied, want allowed:\n%s", u, roles[u], w.name, r)
			case ok && countAudit(ctx, t, cl, u) != recs+1:
				t.Errorf("%s (%s): %s left %d audit records, want 1", u, roles[u], w.name, countAudit(ctx, t, cl, u)-recs)
			case !ok && r.code == 0:
				t.Errorf("%s (%s): %s allowed, want denied:\n%s", u, roles[u], w.name, r)
			case !ok && !strings.Contains(r.stderr, "permission denied: role "+roles[u]) || !ok && !strings.Contains(r.stderr, "cannot write "):
				t.Errorf("%s (%s): %s: want \"permission denied: role %s cannot write ...\"\n%s", u, roles[u], w.name, roles[u], r)
			case !ok && (has != (w.name == "node delete") || countAudit(ctx, t, cl, u) != recs):
				t.Errorf("%s (%s): the denied %s changed the store (key present %v, audit records %d -> %d)", u, roles[u], w.name, has, recs, countAudit(ctx, t, cl, u))
			}
		}
	}
	// A policy-admin cannot edit audit records, not even their own.
	paul := l.StoreConfig() // the lab's certificate for TLS, paul's password for the identity
	paul.Username, paul.Password = "paul", "pw-paul"
	pc, err := store.New(ctx, paul)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close() //nolint:errcheck // test teardown
	if _, err := pc.Etcd().Put(ctx, pc.Prefix()+audit.LogPrefix+audit.WhoSegment(admin)+"/forged", "{}"); err == nil {
		t.Error("policy-admin wrote into the admin's audit records")
	}

	// Revoked: nothing left.
	if r := sk("", "auth", "revoke", "tina"); r.code != 0 {
		t.Fatalf("revoke tina:\n%s", r)
	}
	resetKey(ctx, t, cl, writes[0].key)
	if r := sk("tina", writes[0].args...); r.code == 0 || !strings.Contains(r.stderr, "tina may not read") || !strings.Contains(r.stderr, "permission denied") || keyHas(ctx, t, cl, writes[0].key) {
		t.Errorf("revoked tina applied a policy:\n%s", r)
	}

	// The agents (the lab's certificate, made admin) still serve ADDs.
	c, err := l.AddContainer(ctx, l.Hosts()[1].Name, lab.ContainerOpts{Name: "after-auth"})
	if err != nil {
		t.Fatalf("ADD after auth setup: %v", err)
	}
	first := l.Containers()[0]
	if err := l.Ping(ctx, first.Name, c.IP); err != nil {
		t.Errorf("%s -> %s after auth setup: %v", first.Name, c.Name, err)
	}

	// Bad certificates.
	caPEM, caKeyPEM := testCA(t, dir, time.Now().Add(time.Hour))
	if r := sk("", "auth", "cert", "--ca", caPEM, "--ca-key", caKeyPEM, "--cn", "alice", "--out", filepath.Join(dir, "alice"), "--validity", "30m"); r.code != 0 {
		t.Fatalf("auth cert:\n%s", r)
	}
	if cn, err := audit.CertCN(filepath.Join(dir, "alice.pem")); err != nil || cn != "alice" {
		t.Errorf("issued certificate CN %q, %v; want alice", cn, err)
	}
	unknown := append(append([]string{}, env...), "SKEIN_ETCD_CERT="+filepath.Join(dir, "alice.pem"), "SKEIN_ETCD_KEY="+filepath.Join(dir, "alice-key.pem"))
	cmd := exec.CommandContext(ctx, opsBin(), "policy", "list")
	cmd.Env = append(os.Environ(), unknown...)
	if r := runCmd(t, cmd); r.code == 0 || !strings.Contains(strings.ToLower(r.stderr), "certificate") {
		t.Errorf("a certificate from a CA etcd does not trust: want a clear refusal\n%s", r)
	}
	expCA, expKey := testCA(t, filepath.Join(dir, "old"), time.Now().Add(-time.Hour))
	if r := sk("", "auth", "cert", "--ca", expCA, "--ca-key", expKey, "--cn", "bob", "--out", filepath.Join(dir, "bob")); r.code == 0 || !strings.Contains(r.stderr, "expired") {
		t.Errorf("auth cert from an expired CA:\n%s", r)
	}
	cmd = exec.CommandContext(ctx, opsBin(), "policy", "list")
	cmd.Env = append(os.Environ(), append(append([]string{}, env...), "SKEIN_ETCD_CERT="+expCA, "SKEIN_ETCD_KEY="+expKey)...)
	if r := runCmd(t, cmd); r.code == 0 || !strings.Contains(r.stderr, "expired at") {
		t.Errorf("an expired client certificate: want it named as expired\n%s", r)
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// resetKey puts the state each write starts from: no policy, namespace or
// peer, and a ghost node record (no agent) for node delete.
func resetKey(ctx context.Context, t *testing.T, cl *store.Client, key string) {
	t.Helper()
	if _, err := cl.Etcd().Delete(ctx, cl.Prefix()+key); err != nil {
		t.Fatal(err)
	}
	if key == "nodes/ghost" {
		if err := cl.PutNode(ctx, api.Node{Name: "ghost", UnderlayIP: netip.MustParseAddr("10.255.0.99")}); err != nil {
			t.Fatal(err)
		}
	}
}

func keyHas(ctx context.Context, t *testing.T, cl *store.Client, key string) bool {
	t.Helper()
	resp, err := cl.Etcd().Get(ctx, cl.Prefix()+key, clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count > 0
}

func countAudit(ctx context.Context, t *testing.T, cl *store.Client, who string) int {
	t.Helper()
	resp, err := cl.Etcd().Get(ctx, cl.Prefix()+audit.LogPrefix+audit.WhoSegment(who)+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return int(resp.Count)
}

// testCA writes a CA certificate and key valid until notAfter into dir.
func testCA(t *testing.T, dir string, notAfter time.Time) (certPath, keyPath string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: notAfter.Add(-48 * time.Hour), NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

// upAuthLab brings up a 2-host lab whose etcd requires client
// certificates; t.Cleanup removes it.
func upAuthLab(ctx context.Context, t *testing.T) *lab.Lab {
	t.Helper()
	_ = lab.Down(ctx, authLabName, "") // a crashed run may have left it; nothing there is the usual case
	t.Cleanup(func() {
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := lab.Down(dctx, authLabName, ""); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	l, err := lab.Up(ctx, lab.Config{
		Name:              authLabName,
		Hosts:             2,
		ContainersPerHost: 1,
		EtcdTLS:           true,
		BinDir:            filepath.Dir(opsBin()),
		Log:               slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	return l
}
