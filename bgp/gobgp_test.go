package bgp

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	gobgpapi "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/types/known/anypb"
)

// TestRemoteFamilies: a session counts prefixes only in the families the
// peer's OPEN offered (a ToR's IPv4-only session next to its IPv6 one).
func TestRemoteFamilies(t *testing.T) {
	t.Parallel()
	mp := func(f family) *anypb.Any {
		a, err := anypb.New(&gobgpapi.MultiProtocolCapability{Family: f.api()})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	rr, err := anypb.New(&gobgpapi.RouteRefreshCapability{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		caps []*anypb.Any
		want map[family]bool
	}{
		{"none: IPv4 only", nil, map[family]bool{ipv4Unicast: true}},
		{"no multiprotocol: IPv4 only", []*anypb.Any{rr}, map[family]bool{ipv4Unicast: true}},
		{"IPv4 only", []*anypb.Any{rr, mp(ipv4Unicast)}, map[family]bool{ipv4Unicast: true}},
		{"IPv6 only", []*anypb.Any{mp(ipv6Unicast)}, map[family]bool{ipv6Unicast: true}},
		{"both", []*anypb.Any{mp(ipv4Unicast), mp(ipv6Unicast)}, map[family]bool{ipv4Unicast: true, ipv6Unicast: true}},
	} {
		if got := remoteFamilies(tc.caps); !cmp.Equal(tc.want, got) {
			t.Errorf("%s: remoteFamilies() = %v, want %v", tc.name, got, tc.want)
		}
	}
}
