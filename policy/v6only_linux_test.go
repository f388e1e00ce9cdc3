package policy

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skeinnet/skein/internal/nstest"
)

// TestApplierListsBackV6Only: an IPv6-only cluster (IPv6 pool alone,
// endpoints with IPv6 addresses only): the kernel takes the table and lists
// back what the render says; the IPv6 anti-spoofing and pod-range chains
// are there, and the IPv4 half holds no pod address and no pod range.
func TestApplierListsBackV6Only(t *testing.T) {
	ns := nstest.New(t)
	c := newConn(t, ns)
	pools := []netip.Prefix{netip.MustParsePrefix("fd00::/48")}
	a := NewApplierWith(ApplierConfig{Conn: c, PodCIDRs: pools})
	in := dualStack(applierInput(t, ""))
	for i := range in.Endpoints {
		ep := &in.Endpoints[i]
		ep.IPs = slices.DeleteFunc(slices.Clone(ep.IPs), netip.Addr.Is4)
	}
	p := Compile(in)
	if err := a.Apply(t.Context(), p); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	rs := Render(p)
	rs.PodCIDRs = pools
	if !rs.IPv6 {
		t.Fatalf("render of IPv6-only endpoints has no IPv6 half")
	}
	for _, ad := range rs.Addrs {
		if ad.Addr.Is4() {
			t.Errorf("render lists IPv4 endpoint address %s on %s", ad.Addr, ad.Iface)
		}
	}
	if d := cmp.Diff(expectTable(rs), listTable(t, c)); d != "" {
		t.Errorf("table (-want +got):\n%s", d)
	}
	if text := nftList(t, ns); text != "" {
		for _, want := range []string{
			"iifname . ip6 saddr vmap @ep_addrs6",
			"ip6 daddr != fd00::/48 return",
			"meta nfproto ipv6 goto prerouting6",
			"icmpv6 type nd-router-advert goto router6_drop",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("nft listing lacks %q", want)
			}
		}
		if strings.Contains(text, "10.0.0.0/16") {
			t.Errorf("nft listing names an IPv4 pod range in an IPv6-only cluster:\n%s", text)
		}
	}
}
