package store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"
)

// probe dials ep the way the etcd client would, TLS handshake included, to
// tell why etcd is unreachable: gRPC only reports that the deadline passed.
// It returns nil when nothing is wrong at this level.
func probe(ctx context.Context, ep string, tlsCfg *tls.Config) error {
	network, addr, scheme := "tcp", ep, ""
	if i := strings.Index(ep, "://"); i >= 0 {
		u, err := url.Parse(ep)
		if err != nil {
			return err
		}
		scheme, addr = u.Scheme, u.Host
		if scheme == "unix" || scheme == "unixs" {
			network, addr = "unix", u.Host+u.Path
		}
	}
	if scheme == "http" {
		// The TLS check of a plain endpoint is only worth it when etcd does
		// not answer at once: a healthy etcd is never offered a ClientHello
		// it would log as garbage.
		t := time.NewTimer(plainProbeDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() }) // unblocks the handshake and read
	defer stop()
	defer conn.Close()

	switch {
	case scheme == "https" || scheme == "unixs":
		if tlsCfg == nil {
			tlsCfg = &tls.Config{} // as the etcd client does: system roots
		}
	case scheme == "http":
		return speaksTLS(ctx, conn)
	case tlsCfg == nil:
		return nil
	}
	cfg := tlsCfg.Clone()
	if cfg.ServerName == "" && network == "tcp" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		}
	}
	if cfg.ServerName == "" && network == "unix" {
		// As the etcd client: a unixs:// server is checked against the
		// socket's file name.
		cfg.ServerName = path.Base(addr)
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		if (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) && speaksHTTP(ctx, network, addr) {
			// etcd's plain listener hangs up on a ClientHello rather
			// than answer it in plain text.
			return errSpeaksPlain
		}
		return err
	}
	// With TLS 1.3 the server rejects a missing or bad client certificate
	// only after the client finished its handshake: read for its alert. The
	// server says nothing more until the client speaks, so a timeout is good news.
	if err := tc.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
		return nil
	}
	if _, err := tc.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
		return err
	}
	return nil
}

// plainProbeDelay is how long New lets an http:// endpoint answer before
// checking whether it speaks TLS.
const plainProbeDelay = 300 * time.Millisecond

// errSpeaksTLS reports that an http:// endpoint answered a TLS handshake.
var errSpeaksTLS = errors.New("the endpoint speaks TLS")

// speaksTLS offers a TLS handshake on conn of an http:// endpoint: etcd
// serving TLS there makes the etcd client wait for its whole dial timeout
// without saying why. The handshake verifies nothing and carries no data:
// it only tells which protocol the server speaks.
func speaksTLS(ctx context.Context, conn net.Conn) error {
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // detection only, no data sent
	err := tc.HandshakeContext(ctx)
	var rh tls.RecordHeaderError
	switch {
	case err == nil:
		return errSpeaksTLS
	case ctx.Err() != nil, errors.As(err, &rh), errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
		return nil // plain text, or no answer: not a TLS server
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return errSpeaksTLS // a TLS alert is TLS too
	}
	return nil
}

// errSpeaksPlain reports that an https:// endpoint answered in plain HTTP.
var errSpeaksPlain = errors.New("the endpoint answers plain HTTP, not TLS")

// speaksHTTP reports whether addr answers a plain HTTP request.
func speaksHTTP(ctx context.Context, network, addr string) bool {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return false
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	if _, err := io.WriteString(conn, "GET /version HTTP/1.1\r\nHost: etcd\r\nConnection: close\r\n\r\n"); err != nil {
		return false
	}
	buf := make([]byte, 5)
	_, err = io.ReadFull(conn, buf)
	return err == nil && string(buf) == "HTTP/"
}

// probeResult is what probing one endpoint found.
type probeResult struct {
	Endpoint string
	Err      error
	// Hint names the likely cause and the flag that fixes it.
	Hint string
	// Fatal is a failure that waiting does not cure (a TLS setup that does
	// not match the server's), so New need not wait for its dial timeout.
	Fatal bool
}

func (r probeResult) String() string {
	return r.Endpoint + ": " + r.detail()
}

// detail is the error and the hint, without the endpoint.
func (r probeResult) detail() string {
	if r.Hint == "" {
		return r.Err.Error()
	}
	return fmt.Sprintf("%v: %s", r.Err, r.Hint)
}

// probeAll probes every endpoint and returns the failures, in endpoint order.
func probeAll(ctx context.Context, eps []string, tlsCfg *tls.Config, cfg Config) []probeResult {
	res := make([]probeResult, len(eps))
	done := make(chan struct{})
	for i, ep := range eps {
		go func() {
			defer func() { done <- struct{}{} }()
			if err := probe(ctx, ep, tlsCfg); err != nil {
				hint, fatal := tlsHint(err, cfg)
				if !fatal && ctx.Err() != nil {
					return // cut short: says nothing about the endpoint
				}
				res[i] = probeResult{Endpoint: ep, Err: err, Hint: hint, Fatal: fatal}
			}
		}()
	}
	for range eps {
		<-done
	}
	return slices.DeleteFunc(res, func(r probeResult) bool { return r.Err == nil })
}

// allFatal reports whether every one of n endpoints failed for good.
func allFatal(res []probeResult, n int) bool {
	if len(res) != n || n == 0 {
		return false
	}
	for _, r := range res {
		if !r.Fatal {
			return false
		}
	}
	return true
}

// describe joins probe results for an error message; with a single
// endpoint, which the message names already, it leaves the endpoint out.
func describe(res []probeResult, endpoints int) string {
	if endpoints == 1 && len(res) == 1 {
		return res[0].detail()
	}
	msgs := make([]string, len(res))
	for i, r := range res {
		msgs[i] = r.String()
	}
	return strings.Join(msgs, "; ")
}

// tlsHint names the likely cause of a failed TLS setup and the flag that
// fixes it; fatal is false for errors that may pass (etcd not up yet).
func tlsHint(err error, cfg Config) (hint string, fatal bool) {
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		record    tls.RecordHeaderError
		op        *net.OpError
	)
	switch {
	case errors.Is(err, errSpeaksTLS):
		return "use https:// for this endpoint, with --etcd-ca (and --etcd-cert/--etcd-key if etcd asks for a client certificate)", true
	case errors.As(err, &unknownCA):
		if cfg.CAFile == "" {
			return "etcd's certificate is signed by a CA this host does not trust: set --etcd-ca to the CA that signed it", true
		}
		return fmt.Sprintf("etcd's certificate is not signed by --etcd-ca %s: give the CA that signed etcd's server certificate", cfg.CAFile), true
	case errors.As(err, &hostname):
		return "etcd's certificate is not valid for this address: use a name or IP address listed in the certificate, or reissue it", true
	case errors.As(err, &invalid):
		return "etcd's certificate is not usable (expired, not yet valid or not for server use): reissue it", true
	case errors.Is(err, errSpeaksPlain):
		return "use http:// (or serve etcd with TLS)", true
	case errors.As(err, &record):
		return "the endpoint answered in plain text, not TLS: use http:// (or serve etcd with TLS)", true
	case errors.As(err, &op) && op.Op == "remote error":
		msg := op.Err.Error()
		switch {
		case cfg.CertFile == "" && (strings.Contains(msg, "certificate required") || strings.Contains(msg, "bad certificate") || strings.Contains(msg, "handshake failure")):
			return "etcd asks for a client certificate: set --etcd-cert and --etcd-key", true
		case strings.Contains(msg, "certificate"):
			return fmt.Sprintf("etcd refused the client certificate --etcd-cert %s: it must be signed by the CA etcd trusts for clients (--trusted-ca-file), be current and allow client auth", cfg.CertFile), true
		}
		return "etcd refused the TLS handshake: check --etcd-ca, --etcd-cert and --etcd-key against etcd's TLS settings", true
	}
	return "", false
}
