package lab

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// hostAddrs lists the global addresses of eth0 in ns, by family.
func hostAddrs(t *testing.T, ns string) (v4, v6 []string) {
	t.Helper()
	h, err := handleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	link, err := h.LinkByName(HostIface)
	if err != nil {
		t.Fatalf("%s: %v", ns, err)
	}
	addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		switch {
		case a.IP.To4() != nil:
			v4 = append(v4, a.IPNet.String())
		case a.IP.IsGlobalUnicast():
			v6 = append(v6, a.IPNet.String())
			if a.Flags&unix.IFA_F_TENTATIVE != 0 {
				t.Errorf("%s: %s is tentative (DAD should be off)", ns, a.IPNet)
			}
		}
	}
	return v4, v6
}

// etcdHealthy asks etcd's /health at url from inside host.
func etcdHealthy(ctx context.Context, t *testing.T, l *Lab, host, url string) {
	t.Helper()
	hc, err := l.HTTPClient(host)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Errorf("etcd health at %s from %s: %v", url, host, err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"health":"true"`) {
		t.Errorf("etcd health at %s from %s: %s %s", url, host, resp.Status, body)
	}
}

func TestUnderlayIPv6Only(t *testing.T) {
	needRoot(t)
	cfg := underlayConfig(t, "sktul6", 2)
	cfg.Underlay = UnderlayIPv6
	l := upUnderlay(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	for i, h := range l.Hosts() {
		want := UnderlayAddr6(0, i+1)
		if h.UnderlayIP != want || h.UnderlayIP6 != want {
			t.Errorf("%s: underlay %s / %s, want %s for both", h.Name, h.UnderlayIP, h.UnderlayIP6, want)
		}
		v4, v6 := hostAddrs(t, h.Name)
		if len(v4) != 0 || len(v6) != 1 || v6[0] != want.String()+"/64" {
			t.Errorf("%s: eth0 has IPv4 %v and IPv6 %v, want no IPv4 and %s/64", h.Name, v4, v6, want)
		}
	}
	if err := l.Ping(ctx, "h1", UnderlayAddr6(0, 2)); err != nil {
		t.Errorf("ping h1 -> h2 over IPv6: %v", err)
	}
	if err := l.Ping(ctx, "h2", UnderlayGateway6(0)); err != nil {
		t.Errorf("ping h2 -> IPv6 gateway: %v", err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 700*time.Millisecond)
	if err := l.Ping(pctx, "h1", UnderlayAddr6(0, 0x99)); err == nil {
		t.Error("ping h1 -> fd00:255::99 (nobody) succeeded")
	}
	pcancel()
	eps := l.EtcdUnderlayEndpoints()
	if len(eps) != 1 || eps[0] != "http://[fd00:255::fe]:2379" {
		t.Fatalf("etcd underlay endpoints %v, want http://[fd00:255::fe]:2379", eps)
	}
	etcdHealthy(ctx, t, l, "h1", eps[0])

	ld, err := Load(cfg.Name, cfg.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	if st := ld.State(); st.Underlay != UnderlayIPv6 || st.Hosts[1].UnderlayIP6 != UnderlayAddr6(0, 2) {
		t.Errorf("lab.json: underlay %q, h2 IPv6 %s; want ipv6, %s", st.Underlay, st.Hosts[1].UnderlayIP6, UnderlayAddr6(0, 2))
	}
}

func TestUnderlayDual(t *testing.T) {
	needRoot(t)
	cfg := underlayConfig(t, "sktuld", 2)
	cfg.Underlay = UnderlayDual
	l := upUnderlay(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	h2 := l.Hosts()[1]
	if h2.UnderlayIP != UnderlayAddr(0, 2) || h2.UnderlayIP6 != UnderlayAddr6(0, 2) {
		t.Errorf("h2: underlay %s / %s, want %s / %s", h2.UnderlayIP, h2.UnderlayIP6, UnderlayAddr(0, 2), UnderlayAddr6(0, 2))
	}
	v4, v6 := hostAddrs(t, h2.Name)
	if strings.Join(v4, " ") != "10.255.0.2/24" || strings.Join(v6, " ") != "fd00:255::2/64" {
		t.Errorf("h2: eth0 has %v %v, want 10.255.0.2/24 and fd00:255::2/64", v4, v6)
	}
	for _, dst := range []netip.Addr{UnderlayAddr(0, 2), UnderlayAddr6(0, 2), UnderlayGateway6(0)} {
		if err := l.Ping(ctx, "h1", dst); err != nil {
			t.Errorf("ping h1 -> %s: %v", dst, err)
		}
	}
	m := l.State().Etcd[0]
	if m.ClientURL != "http://10.255.0.254:2379" || m.ClientURL6 != "http://[fd00:255::fe]:2379" {
		t.Errorf("etcd client URLs %s %s, want the IPv4 and the IPv6 gateway", m.ClientURL, m.ClientURL6)
	}
	etcdHealthy(ctx, t, l, "h1", m.ClientURL)
	etcdHealthy(ctx, t, l, "h1", m.ClientURL6)
}

// TestToRDualUnderlay: a dual-stack underlay on two subnets behind a BIRD
// ToR (no agents): the ToR forwards IPv6 too, every host has an IPv6
// default route via its subnet's IPv6 gateway, and a host reaches a host
// on the other subnet and etcd's IPv6 listener over IPv6 through it.
func TestToRDualUnderlay(t *testing.T) {
	needRoot(t)
	needToR(t, ToRBIRD)
	cfg := underlayConfig(t, "sktorud", 2)
	cfg.Backend, cfg.ToR, cfg.Subnets, cfg.Underlay = "bgp", ToRBIRD, 2, UnderlayDual
	l := upUnderlay(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	h2 := l.Hosts()[1]
	if h2.UnderlayIP6 != UnderlayAddr6(2, 2) {
		t.Fatalf("h2 IPv6 underlay %s, want %s", h2.UnderlayIP6, UnderlayAddr6(2, 2))
	}
	out, err := l.Exec(ctx, "h2", ipCommand(), "-6", "route", "show", "default")
	if err != nil || !strings.Contains(string(out), "via "+UnderlayGateway6(2).String()) {
		t.Errorf("h2 IPv6 default route: %v %q, want via %s", err, out, UnderlayGateway6(2))
	}
	out, err = l.Exec(ctx, "tor", "cat", "/proc/sys/net/ipv6/conf/all/forwarding")
	if err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Errorf("tor IPv6 forwarding = %q (%v), want 1", out, err)
	}
	if err := l.Ping(ctx, "h1", h2.UnderlayIP6); err != nil {
		t.Errorf("ping h1 -> h2 over IPv6 across subnets: %v", err)
	}
	etcdHealthy(ctx, t, l, "h2", l.State().Etcd[0].ClientURL6)
}
