// Package kubeapi prepares a real kube-apiserver for a lab host: its
// flags, ServiceAccount key and token file, the client configuration that
// reaches it through the lab, and a kubeconfig for skein-kube. The e2e
// suite and the bench share it; each starts the process its own way.
package kubeapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skeinnet/skein/lab"
)

// Port is the API server's secure port on the host's underlay address.
const Port = "6443"

// Token is one line of the static token file.
type Token struct {
	Token, User, UID string
	Groups           []string
}

// Server is a prepared API server: Args are its flags, URL its address.
type Server struct {
	Host string
	URL  string
	Args []string
	l    *lab.Lab
}

// Prepare writes the ServiceAccount key and token file into dir and
// returns the flags for an API server in host, storing in the lab's etcd
// under its own prefix. Inside a namespace without a default route it
// needs --advertise-address and no endpoint reconciler; the ServiceAccount
// admission plugin is off, so no `default` service account is needed.
func Prepare(l *lab.Lab, host lab.Host, dir string, tokens []Token) (*Server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ip := host.UnderlayIP.String()
	saKey := filepath.Join(dir, "sa.key")
	if err := writeECKey(saKey); err != nil {
		return nil, fmt.Errorf("kube-apiserver service account key: %w", err)
	}
	var csv strings.Builder
	for _, t := range tokens {
		fmt.Fprintf(&csv, "%s,%s,%s", t.Token, t.User, t.UID)
		if len(t.Groups) > 0 {
			fmt.Fprintf(&csv, ",%q", strings.Join(t.Groups, ","))
		}
		csv.WriteString("\n")
	}
	tokenFile := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(csv.String()), 0o600); err != nil {
		return nil, err
	}
	args := []string{
		"--etcd-servers=" + strings.Join(l.EtcdUnderlayEndpoints(), ","),
		"--etcd-prefix=/kube-registry",
		"--advertise-address=" + ip, "--bind-address=" + ip, "--secure-port=" + Port,
		"--endpoint-reconciler-type=none",
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--token-auth-file=" + tokenFile,
		"--authorization-mode=RBAC",
		"--disable-admission-plugins=ServiceAccount",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + saKey,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--enable-priority-and-fairness=false",
		"--allow-privileged=true", // skeind's DaemonSet is privileged
		"--profiling=false",
	}
	if f := l.EtcdTLS(); f != nil {
		args = append(args, "--etcd-cafile="+f.CA, "--etcd-certfile="+f.Cert, "--etcd-keyfile="+f.Key)
	}
	return &Server{Host: host.Name, URL: "https://" + net.JoinHostPort(ip, Port), Args: args, l: l}, nil
}

// RestConfig is a client configuration with a bearer token that dials
// through the server's host namespace (the test process is outside it).
func (s *Server) RestConfig(token string, qps float32, burst int) *rest.Config {
	return &rest.Config{
		Host: s.URL, BearerToken: token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return s.l.Dial(ctx, s.Host, network, addr)
		},
		QPS: qps, Burst: burst,
	}
}

// Kubeconfig is a kubeconfig for skein-kube with a bearer token.
func (s *Server) Kubeconfig(token string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: lab, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: skein-kube, user: {token: %q}}]
contexts: [{name: lab, context: {cluster: lab, user: skein-kube}}]
current-context: lab
`, s.URL, token)
}

// WaitReady polls /readyz, then waits for kube-system, which appears
// shortly after it; it gives up after wait.
func WaitReady(ctx context.Context, cs kubernetes.Interface, wait time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var last error
	for {
		if _, last = cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(wctx); last == nil {
			if _, last = cs.CoreV1().Namespaces().Get(wctx, "kube-system", metav1.GetOptions{}); last == nil {
				return nil
			}
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("kube-apiserver not ready after %s: %w", wait, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// writeECKey writes a fresh P-256 key, the ServiceAccount token key.
func writeECKey(path string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}
