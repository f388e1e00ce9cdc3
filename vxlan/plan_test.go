package vxlan

import (
	"cmp"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/internal/reconcile"
)

// netipOpt compares netip values with ==, as go-cmp cannot see inside them.
var netipOpt = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})

var (
	pfx = netip.MustParsePrefix
	ip  = netip.MustParseAddr
)

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// Three hosts on 192.0.2.0/24; VTEP IPs are the first address of each host's
// first block, flannel style.
var (
	selfCfg = Config{
		Node:            "node-a",
		UnderlayIP:      ip("192.0.2.1"),
		UnderlayIfIndex: 2,
		MTU:             1450,
		VTEPMAC:         mac("02:00:00:00:00:0a"),
		VTEPIP:          ip("10.244.0.0"),
	}
	peerA = Peer{Node: "node-a", UnderlayIP: ip("192.0.2.1"), VTEPMAC: mac("02:00:00:00:00:0a"), VTEPIP: ip("10.244.0.0"),
		Blocks: []netip.Prefix{pfx("10.244.0.0/26")}, SameSubnet: true}
	peerB = Peer{Node: "node-b", UnderlayIP: ip("192.0.2.2"), VTEPMAC: mac("02:00:00:00:00:0b"), VTEPIP: ip("10.244.0.64"),
		Blocks: []netip.Prefix{pfx("10.244.0.64/26")}, SameSubnet: true}
	peerC = Peer{Node: "node-c", UnderlayIP: ip("198.51.100.3"), VTEPMAC: mac("02:00:00:00:00:0c"), VTEPIP: ip("10.244.0.128"),
		Blocks: []netip.Prefix{pfx("10.244.0.128/26"), pfx("10.244.1.0/26")}}
)

func wantLink() LinkSpec {
	return LinkSpec{Name: api.VXLANDevice, VNI: api.DefaultVNI, Port: api.DefaultVXLANPort, Local: ip("192.0.2.1"),
		UnderlayIndex: 2, MTU: 1450, MAC: mac("02:00:00:00:00:0a")}
}

// overlay returns what Plan wants for p reached through the tunnel.
func overlay(p Peer) (Neigh, FDBEntry, []Route) {
	var rs []Route
	for _, b := range p.Blocks {
		rs = append(rs, Route{Dst: b, Gw: p.VTEPIP, OnLink: true})
	}
	return Neigh{IP: p.VTEPIP, MAC: p.VTEPMAC, Permanent: true}, FDBEntry{MAC: p.VTEPMAC, Dst: p.UnderlayIP}, rs
}

// state builds a State from objects.
func state(neighs []Neigh, fdb []FDBEntry, routes []Route) State {
	st := State{Link: wantLink(), Addr: pfx("10.244.0.0/32"),
		Neighs: map[netip.Addr]Neigh{}, FDB: map[FDBKey]FDBEntry{}, Routes: map[netip.Prefix]Route{}}
	for _, n := range neighs {
		st.Neighs[n.IP] = n
	}
	for _, e := range fdb {
		st.FDB[e.Key()] = e
	}
	for _, r := range routes {
		st.Routes[r.Dst] = r
	}
	return st
}

func overlayState(peers ...Peer) State {
	var (
		ns []Neigh
		fs []FDBEntry
		rs []Route
	)
	for _, p := range peers {
		n, f, r := overlay(p)
		ns, fs, rs = append(ns, n), append(fs, f), append(rs, r...)
	}
	return state(ns, fs, rs)
}

func withBlock(p Peer, b netip.Prefix) Peer {
	p.Blocks = append(slices.Clone(p.Blocks), b)
	return p
}

func TestPlan(t *testing.T) {
	t.Parallel()
	direct := selfCfg
	direct.DirectRouting = true
	directNoIf := direct
	directNoIf.UnderlayIfIndex = 0
	noIfLink := wantLink()
	noIfLink.UnderlayIndex = 0

	tests := []struct {
		name  string
		cfg   Config
		peers []Peer
		want  State
	}{
		{
			name: "no peers",
			cfg:  selfCfg,
			want: state(nil, nil, nil),
		},
		{
			name:  "overlay to every peer, self skipped",
			cfg:   selfCfg,
			peers: []Peer{peerC, peerA, peerB},
			want:  overlayState(peerB, peerC),
		},
		{
			name: "self skipped by VTEP IP and by underlay IP",
			cfg:  selfCfg,
			peers: []Peer{
				{Node: "old-a", UnderlayIP: ip("192.0.2.9"), VTEPMAC: mac("02:00:00:00:00:99"), VTEPIP: ip("10.244.0.0")},
				{Node: "other-a", UnderlayIP: ip("192.0.2.1"), VTEPMAC: mac("02:00:00:00:00:98"), VTEPIP: ip("10.244.9.0")},
				peerB,
			},
			want: overlayState(peerB),
		},
		{
			name: "peers without VTEP or underlay skipped",
			cfg:  selfCfg,
			peers: []Peer{
				{Node: "no-vtep-ip", UnderlayIP: ip("192.0.2.5"), VTEPMAC: mac("02:00:00:00:00:05"), Blocks: []netip.Prefix{pfx("10.244.5.0/26")}},
				{Node: "no-vtep-mac", UnderlayIP: ip("192.0.2.6"), VTEPIP: ip("10.244.6.0"), Blocks: []netip.Prefix{pfx("10.244.6.0/26")}},
				{Node: "no-underlay", VTEPMAC: mac("02:00:00:00:00:07"), VTEPIP: ip("10.244.7.0"), Blocks: []netip.Prefix{pfx("10.244.7.0/26")}},
				{Node: "v6-underlay", UnderlayIP: ip("2001:db8::8"), VTEPMAC: mac("02:00:00:00:00:08"), VTEPIP: ip("10.244.8.0"), Blocks: []netip.Prefix{pfx("10.244.8.0/26")}},
				peerB,
			},
			want: overlayState(peerB),
		},
		{
			name:  "block added",
			cfg:   selfCfg,
			peers: []Peer{withBlock(peerB, pfx("10.244.2.0/26"))},
			want:  overlayState(withBlock(peerB, pfx("10.244.2.0/26"))),
		},
		{
			name: "VTEP IP outside blocks gets a host route",
			cfg:  selfCfg,
			peers: []Peer{{Node: "node-d", UnderlayIP: ip("192.0.2.4"), VTEPMAC: mac("02:00:00:00:00:0d"), VTEPIP: ip("172.31.0.4"),
				Blocks: []netip.Prefix{pfx("10.244.3.0/26")}}},
			want: state(
				[]Neigh{{IP: ip("172.31.0.4"), MAC: mac("02:00:00:00:00:0d"), Permanent: true}},
				[]FDBEntry{{MAC: mac("02:00:00:00:00:0d"), Dst: ip("192.0.2.4")}},
				[]Route{
					{Dst: pfx("10.244.3.0/26"), Gw: ip("172.31.0.4"), OnLink: true},
					{Dst: pfx("172.31.0.4/32"), Gw: ip("172.31.0.4"), OnLink: true},
				}),
		},
		{
			name: "block claimed twice goes to the first node by name; blocks are masked, other families skipped",
			cfg:  selfCfg,
			peers: []Peer{
				withBlock(peerC, pfx("10.244.0.65/26")),
				withBlock(peerB, pfx("fd00::/64")),
			},
			want: overlayState(peerB, peerC),
		},
		{
			name: "VTEP MAC claimed twice or by this host",
			cfg:  selfCfg,
			peers: []Peer{
				{Node: "node-0", UnderlayIP: ip("192.0.2.50"), VTEPMAC: peerB.VTEPMAC, VTEPIP: ip("10.244.50.0"), Blocks: []netip.Prefix{pfx("10.244.50.0/26")}},
				{Node: "node-1", UnderlayIP: ip("192.0.2.51"), VTEPMAC: selfCfg.VTEPMAC, VTEPIP: ip("10.244.51.0"), Blocks: []netip.Prefix{pfx("10.244.51.0/26")}},
				peerB,
			},
			want: overlayState(Peer{Node: "node-0", UnderlayIP: ip("192.0.2.50"), VTEPMAC: peerB.VTEPMAC, VTEPIP: ip("10.244.50.0"), Blocks: []netip.Prefix{pfx("10.244.50.0/26")}}),
		},
		{
			name:  "direct routing to peers on the same subnet",
			cfg:   direct,
			peers: []Peer{peerA, peerB, peerC},
			want: func() State {
				n, f, rs := overlay(peerC)
				rs = append(rs, Route{Dst: pfx("10.244.0.64/26"), Gw: ip("192.0.2.2"), Direct: true})
				return state([]Neigh{n}, []FDBEntry{f}, rs)
			}(),
		},
		{
			name:  "direct routing needs the underlay ifindex",
			cfg:   directNoIf,
			peers: []Peer{peerB},
			want: func() State {
				st := overlayState(peerB)
				st.Link = noIfLink
				return st
			}(),
		},
		{
			name: "defaults and explicit device settings",
			cfg: Config{Device: "vx9", VNI: 9, Port: 8472, UnderlayIP: ip("192.0.2.1"),
				VTEPMAC: mac("02:00:00:00:00:0a"), VTEPIP: ip("10.244.0.0")},
			want: func() State {
				st := state(nil, nil, nil)
				st.Link = LinkSpec{Name: "vx9", VNI: 9, Port: 8472, Local: ip("192.0.2.1"), MAC: mac("02:00:00:00:00:0a")}
				return st
			}(),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := Plan(tc.cfg, tc.peers)
			if d := gocmp.Diff(tc.want, got, netipOpt); d != "" {
				t.Errorf("Plan() mismatch (-want +got):\n%s", d)
			}
			// Deterministic whatever the order of peers.
			rev := slices.Clone(tc.peers)
			slices.Reverse(rev)
			if d := gocmp.Diff(got, Plan(tc.cfg, rev), netipOpt); d != "" {
				t.Errorf("Plan() depends on peer order (-forward +reversed):\n%s", d)
			}
			// A second pass against its own result changes nothing.
			if n := diffLen(got, Plan(tc.cfg, tc.peers)); n != 0 {
				t.Errorf("second pass: %d operations, want 0", n)
			}
		})
	}
}

func diffLen(want, have State) int {
	return reconcile.Diff(want.Neighs, have.Neighs, neighEqual).Len() +
		reconcile.Diff(want.FDB, have.FDB, fdbEqual).Len() +
		reconcile.Diff(want.Routes, have.Routes, routeEqual).Len()
}

// TestPlanTransitions checks the diffs between plans, as Sync applies them.
func TestPlanTransitions(t *testing.T) {
	t.Parallel()
	direct := selfCfg
	direct.DirectRouting = true
	tests := []struct {
		name       string
		from, to   State
		wantAdd    []string
		wantChange []string
		wantDelete []string
	}{
		{
			name:    "converge from empty",
			from:    state(nil, nil, nil),
			to:      Plan(selfCfg, []Peer{peerB}),
			wantAdd: []string{"fdb 02:00:00:00:00:0b dst 192.0.2.2", "neigh 10.244.0.64 lladdr 02:00:00:00:00:0b permanent", "route 10.244.0.64/26 via 10.244.0.64 onlink"},
		},
		{
			name:       "node removed",
			from:       Plan(selfCfg, []Peer{peerB, peerC}),
			to:         Plan(selfCfg, []Peer{peerB}),
			wantDelete: []string{"fdb 02:00:00:00:00:0c dst 198.51.100.3", "neigh 10.244.0.128 lladdr 02:00:00:00:00:0c permanent", "route 10.244.0.128/26 via 10.244.0.128 onlink", "route 10.244.1.0/26 via 10.244.0.128 onlink"},
		},
		{
			name:    "block added",
			from:    Plan(selfCfg, []Peer{peerB}),
			to:      Plan(selfCfg, []Peer{withBlock(peerB, pfx("10.244.2.0/26"))}),
			wantAdd: []string{"route 10.244.2.0/26 via 10.244.0.64 onlink"},
		},
		{
			name: "peer moved to a new underlay IP",
			from: Plan(selfCfg, []Peer{peerB}),
			to: func() State {
				p := peerB
				p.UnderlayIP = ip("192.0.2.22")
				return Plan(selfCfg, []Peer{p})
			}(),
			wantAdd:    []string{"fdb 02:00:00:00:00:0b dst 192.0.2.22"},
			wantDelete: []string{"fdb 02:00:00:00:00:0b dst 192.0.2.2"},
		},
		{
			name:       "direct routing switched on",
			from:       Plan(selfCfg, []Peer{peerB}),
			to:         Plan(direct, []Peer{peerB}),
			wantChange: []string{"route 10.244.0.64/26 via 192.0.2.2 direct"},
			wantDelete: []string{"fdb 02:00:00:00:00:0b dst 192.0.2.2", "neigh 10.244.0.64 lladdr 02:00:00:00:00:0b permanent"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var add, change, del []string
			collect := func(d reconcile.Delta[string, string]) {
				for _, it := range d.Add {
					add = append(add, it.Value)
				}
				for _, it := range d.Change {
					change = append(change, it.Value)
				}
				for _, it := range d.Delete {
					del = append(del, it.Value)
				}
			}
			collect(reconcile.Diff(texts(tc.to.Neighs), texts(tc.from.Neighs), eqString))
			collect(reconcile.Diff(texts(tc.to.FDB), texts(tc.from.FDB), eqString))
			collect(reconcile.Diff(texts(tc.to.Routes), texts(tc.from.Routes), eqString))
			for _, s := range [][]string{add, change, del} {
				slices.Sort(s)
			}
			got := [3][]string{add, change, del}
			want := [3][]string{tc.wantAdd, tc.wantChange, tc.wantDelete}
			if d := gocmp.Diff(want, got); d != "" {
				t.Errorf("diff mismatch [add change delete] (-want +got):\n%s", d)
			}
		})
	}
}

func eqString(a, b string) bool { return a == b }

// texts keys objects by the kind of key Sync diffs on, rendering values.
func texts[K comparable, V interface{ String() string }](m map[K]V) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		ks := ""
		switch k := any(k).(type) {
		case netip.Addr:
			ks = k.String()
		case netip.Prefix:
			ks = k.String()
		case FDBKey:
			ks = k.MAC + " " + k.Dst.String()
		}
		out[ks] = v.String()
	}
	return out
}

func TestIncompat(t *testing.T) {
	t.Parallel()
	base := wantLink()
	tests := []struct {
		name   string
		change func(*LinkSpec)
		want   string // substring of the reason; "" = compatible
	}{
		{name: "same", change: func(*LinkSpec) {}},
		{name: "mtu can change in place", change: func(s *LinkSpec) { s.MTU = 1500 }},
		{name: "mac can change in place", change: func(s *LinkSpec) { s.MAC = mac("02:00:00:00:00:ff") }},
		{name: "vni", change: func(s *LinkSpec) { s.VNI = 1 }, want: "vni 1, want 4096"},
		{name: "port", change: func(s *LinkSpec) { s.Port = 8472 }, want: "port 8472"},
		{name: "local", change: func(s *LinkSpec) { s.Local = ip("192.0.2.99") }, want: "local 192.0.2.99"},
		{name: "underlay", change: func(s *LinkSpec) { s.UnderlayIndex = 0 }, want: "underlay ifindex 0"},
		{name: "learning", change: func(s *LinkSpec) { s.Learning = true }, want: "learning true"},
		{name: "name", change: func(s *LinkSpec) { s.Name = "x" }, want: "name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			have := wantLink()
			tc.change(&have)
			got := base.Incompat(have)
			if (got == "") != (tc.want == "") || !strings.Contains(got, tc.want) {
				t.Errorf("Incompat() = %q, want %q", got, cmp.Or(tc.want, "compatible"))
			}
		})
	}
}

func TestLines(t *testing.T) {
	t.Parallel()
	got := Plan(selfCfg, []Peer{peerB}).Lines()
	want := []string{
		"link skein.vxlan vni 4096 port 4789 local 192.0.2.1 dev 2 nolearning mtu 1450 address 02:00:00:00:00:0a",
		"addr 10.244.0.0/32",
		"fdb 02:00:00:00:00:0b dst 192.0.2.2",
		"neigh 10.244.0.64 lladdr 02:00:00:00:00:0b permanent",
		"route 10.244.0.64/26 via 10.244.0.64 onlink",
	}
	if d := gocmp.Diff(want, got); d != "" {
		t.Errorf("Lines() mismatch (-want +got):\n%s", d)
	}
}

func TestCloneIsDeep(t *testing.T) {
	t.Parallel()
	orig := Plan(selfCfg, []Peer{peerB})
	c := orig.Clone()
	c.Link.MAC[0] = 0xff
	for k, n := range c.Neighs {
		n.MAC[0] = 0xff
		c.Neighs[k] = n
	}
	for k, e := range c.FDB {
		e.MAC[0] = 0xff
		c.FDB[k] = e
	}
	delete(c.Routes, pfx("10.244.0.64/26"))
	if d := gocmp.Diff(Plan(selfCfg, []Peer{peerB}), orig, netipOpt); d != "" {
		t.Errorf("changing a clone changed the original (-want +got):\n%s", d)
	}
}
