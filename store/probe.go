package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"strings"
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
	case scheme == "http" || tlsCfg == nil:
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

// probeAll probes every endpoint and describes the failures, or returns "".
func probeAll(ctx context.Context, eps []string, tlsCfg *tls.Config) string {
	errs := make([]error, len(eps))
	done := make(chan struct{})
	for i, ep := range eps {
		go func() {
			defer func() { done <- struct{}{} }()
			if err := probe(ctx, ep, tlsCfg); err != nil {
				errs[i] = fmt.Errorf("%s: %w", ep, err)
			}
		}()
	}
	for range eps {
		<-done
	}
	var msgs []string
	for _, err := range errs {
		if err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	return strings.Join(msgs, "; ")
}
