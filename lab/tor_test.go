package lab

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/skeinnet/skein/api"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// torState is a lab of three hosts on two subnets behind a ToR of kind.
func torState(kind string, subnets int) State {
	st := State{Name: "sklab", RunDir: "/run/skein-lab/sklab", Subnets: subnets}
	t := newToR(st.Name, st.RunDir, kind, api.DefaultASN)
	st.ToR = &t
	for i := 3; i >= 1; i-- { // out of order: rendering sorts by index
		st.Hosts = append(st.Hosts, newHost(st.Name, st.RunDir, "", hostSubnet(kind, subnets, i), i))
	}
	return st
}

// torState6 is torState on a dual underlay with IPv6 sessions.
func torState6(kind string, subnets int) State {
	st := torState(kind, subnets)
	st.Underlay, st.ToR.IPv6Sessions = UnderlayDual, true
	st.Hosts = st.Hosts[:0]
	for i := 3; i >= 1; i-- {
		st.Hosts = append(st.Hosts, newHost(st.Name, st.RunDir, UnderlayDual, hostSubnet(kind, subnets, i), i))
	}
	return st
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, d)
	}
}

// TestToRConfig: the rendered configurations are what docs/bgp.md shows.
func TestToRConfig(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{ToRBIRD, ToRFRR} {
		st := torState(kind, 2)
		conf, err := torConfig(st)
		if err != nil {
			t.Fatalf("torConfig(%s): %v", kind, err)
		}
		golden(t, "TestToRConfig_"+kind, conf)
		// Every host is a neighbour, with the ToR's address on its subnet.
		for _, h := range st.Hosts {
			if !strings.Contains(string(conf), h.UnderlayIP.String()) {
				t.Errorf("%s config does not peer with %s (%s)", kind, h.Name, h.UnderlayIP)
			}
		}
	}
	if _, err := torConfig(State{Name: "x"}); err == nil {
		t.Error("torConfig without a ToR succeeded")
	}
	st := torState(ToRBIRD, 1)
	st.ToR.Kind = "quagga"
	if _, err := torConfig(st); err == nil {
		t.Error("torConfig of an unknown kind succeeded")
	}
	// A dual-stack underlay adds the IPv6 family, next hop self on the
	// ToR's IPv6 address on each host's subnet; the IPv4 part is unchanged.
	for _, kind := range []string{ToRBIRD, ToRFRR} {
		st := torState(kind, 2)
		st.Underlay = UnderlayDual
		conf, err := torConfig(st)
		if err != nil {
			t.Fatalf("torConfig(%s, dual): %v", kind, err)
		}
		golden(t, "TestToRConfig_"+kind+"_dual", conf)
	}
	// IPv6 sessions: the IPv4 sessions lose the IPv6 family, each host
	// gets an IPv6 session for it, reflected with the next hop unchanged on
	// one subnet and next hop self on more.
	for _, kind := range []string{ToRBIRD, ToRFRR} {
		st := torState6(kind, 1)
		conf, err := torConfig(st)
		if err != nil {
			t.Fatalf("torConfig(%s, ipv6 sessions): %v", kind, err)
		}
		golden(t, "TestToRConfig_"+kind+"_sessions6", conf)
		for _, h := range st.Hosts {
			if !h.UnderlayIP6.IsValid() || !strings.Contains(string(conf), "neighbor "+h.UnderlayIP6.String()) {
				t.Errorf("%s config has no IPv6 session with %s (%s)", kind, h.Name, h.UnderlayIP6)
			}
		}
		conf2, err := torConfig(torState6(kind, 2))
		if err != nil {
			t.Fatal(err)
		}
		self := map[string]string{ToRBIRD: "next hop self on;\n\t};\n}\n\nprotocol bgp h1_6", ToRFRR: "neighbor hosts6 next-hop-self force"}[kind]
		if !strings.Contains(string(conf2), self) || strings.Contains(string(conf), self) {
			t.Errorf("%s: IPv6 sessions reflect with next hop self on two subnets only, want %q:\n%s", kind, self, conf2)
		}
	}
	z := frrZebraConfig(torState(ToRFRR, 1))
	if !strings.Contains(z, "log file /run/skein-lab/sklab/tor/frr/zebra.log") {
		t.Errorf("zebra config %q does not log under the run dir", z)
	}
}

func TestToRPlan(t *testing.T) {
	t.Parallel()
	b := newToR("sklab", "/run/skein-lab/sklab", ToRBIRD, 64512)
	wantB := ToR{
		Kind: "bird", NetNS: "sklab-tor", RouterID: netip.MustParseAddr("10.255.0.253"), ASN: 64512,
		Dir: "/run/skein-lab/sklab/tor", Config: "/run/skein-lab/sklab/tor/bird.conf",
		Socket: "/run/skein-lab/sklab/tor/bird.ctl", LogPath: "/run/skein-lab/sklab/tor/bird.log",
	}
	if d := cmp.Diff(wantB, b, cmpopts.EquateComparable(netip.Addr{})); d != "" {
		t.Errorf("newToR(bird) mismatch (-want +got):\n%s", d)
	}
	f := newToR("sklab", "/run/skein-lab/sklab", ToRFRR, 64512)
	if f.Config != "/run/skein-lab/sklab/tor/frr/bgpd.conf" || f.Socket != "/run/skein-lab/sklab/tor/frr" || f.frrDir() != f.Socket {
		t.Errorf("newToR(frr) = %+v", f)
	}
	if b.ClientCommand() != "birdc -s /run/skein-lab/sklab/tor/bird.ctl" || f.ClientCommand() != "vtysh --vty_socket /run/skein-lab/sklab/tor/frr" {
		t.Errorf("client commands %q %q", b.ClientCommand(), f.ClientCommand())
	}
	// The ToR's processes are the lab's.
	if !argsOfRunDir([]string{"bird", "-f", "-c", b.Config, "-s", b.Socket}, "/run/skein-lab/sklab") {
		t.Error("bird's command line is not recognized as the lab's")
	}
	if !argsOfRunDir([]string{"/usr/lib/frr/bgpd", "-f", f.Config, "--vty_socket", f.Socket}, "/run/skein-lab/sklab") {
		t.Error("bgpd's command line is not recognized as the lab's")
	}
	if argsOfRunDir([]string{"bird", "-s", "/run/bird/bird.ctl"}, "/run/skein-lab/sklab") {
		t.Error("the system's bird is taken for the lab's")
	}

	for _, tc := range []struct {
		subnet int
		addr   string
		port   string
		iface  string
	}{{0, "10.255.0.253", "vt0", "eth0"}, {1, "10.255.1.254", "vt1", "eth1"}, {2, "10.255.2.254", "vt2", "eth2"}} {
		port, iface := torLeg(tc.subnet)
		if got := ToRAddr(tc.subnet).String(); got != tc.addr || port != tc.port || iface != tc.iface {
			t.Errorf("subnet %d: ToRAddr %s leg %s/%s, want %s %s/%s", tc.subnet, got, port, iface, tc.addr, tc.port, tc.iface)
		}
	}
	if subnetBridge(0) != "ubr" || subnetBridge(2) != "ubr2" {
		t.Errorf("subnet bridges %s %s, want ubr ubr2", subnetBridge(0), subnetBridge(2))
	}
	var got []int
	for i := 1; i <= 5; i++ {
		got = append(got, hostSubnet("", 1, i), hostSubnet(ToRBIRD, 1, i), hostSubnet(ToRFRR, 2, i))
	}
	want := []int{0, 1, 1, 0, 1, 2, 0, 1, 1, 0, 1, 2, 0, 1, 1}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("hostSubnet (no tor, 1 subnet, 2 subnets per host) mismatch (-want +got):\n%s", d)
	}
}

func TestToRPeers(t *testing.T) {
	t.Parallel()
	addr := cmpopts.EquateComparable(netip.Addr{})
	one := torState(ToRBIRD, 1)
	want := []api.BGPPeer{{Name: "tor", PeerIP: netip.MustParseAddr("10.255.1.254"), ASN: 64512, Description: "bird top-of-rack route reflector"}}
	if d := cmp.Diff(want, torPeers(one, one.Hosts), addr); d != "" {
		t.Errorf("torPeers, one subnet (-want +got):\n%s", d)
	}
	two := torState(ToRFRR, 2)
	got := torPeers(two, two.Hosts)
	want = []api.BGPPeer{
		{Name: "tor-h3", PeerIP: netip.MustParseAddr("10.255.1.254"), ASN: 64512, Node: "sklab-h3", Description: "frr top-of-rack route reflector on subnet 1"},
		{Name: "tor-h2", PeerIP: netip.MustParseAddr("10.255.2.254"), ASN: 64512, Node: "sklab-h2", Description: "frr top-of-rack route reflector on subnet 2"},
		{Name: "tor-h1", PeerIP: netip.MustParseAddr("10.255.1.254"), ASN: 64512, Node: "sklab-h1", Description: "frr top-of-rack route reflector on subnet 1"},
	}
	if d := cmp.Diff(want, got, addr); d != "" {
		t.Errorf("torPeers, two subnets (-want +got):\n%s", d)
	}
	for _, p := range got {
		if err := p.Validate(); err != nil {
			t.Errorf("peer %s: %v", p.Name, err)
		}
	}
	// IPv6 sessions add an IPv6 peer: for every node, or per host.
	six := torState6(ToRBIRD, 1)
	want = []api.BGPPeer{
		{Name: "tor", PeerIP: netip.MustParseAddr("10.255.1.254"), ASN: 64512, Description: "bird top-of-rack route reflector"},
		{Name: "tor6", PeerIP: ToRAddr6(1), ASN: 64512, Description: "bird top-of-rack route reflector, IPv6 session"},
	}
	if d := cmp.Diff(want, torPeers(six, six.Hosts), addr); d != "" {
		t.Errorf("torPeers, IPv6 sessions (-want +got):\n%s", d)
	}
	six = torState6(ToRFRR, 2)
	got = torPeers(six, six.Hosts)
	if len(got) != 6 || got[1].Name != "tor6-h3" || got[1].PeerIP != ToRAddr6(1) || got[1].Node != "sklab-h3" || got[3].PeerIP != ToRAddr6(2) {
		t.Errorf("torPeers, IPv6 sessions on two subnets: %+v", got)
	}
	for _, p := range got {
		if err := p.Validate(); err != nil {
			t.Errorf("peer %s: %v", p.Name, err)
		}
	}
	if torPeers(State{}, nil) != nil {
		t.Error("torPeers without a ToR is not empty")
	}
}

func TestParseBirdProtocols(t *testing.T) {
	t.Parallel()
	out := `BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     03:23:39.066  
kernel1    Kernel     master4    up     03:23:39.066  
h1         BGP        ---        up     03:23:41.845  Established   
  Description:    skbird-h1
  BGP state:          Established
    Neighbor address: 10.255.1.1
  Channel ipv4
    State:          UP
    Routes:         1 imported, 2 exported, 1 preferred
h2         BGP        ---        start  2026-11-25    Active        Socket: Connection refused
h3         BGP        ---        down   03:23:39.066  
other      BGP        ---        up     03:23:41.845  Established   
h1_6       BGP        ---        up     03:23:41.845  Established   
    Routes:         1 imported, 2 exported, 1 preferred
`
	st := torState6(ToRBIRD, 2)
	got := parseBirdProtocols(out, torNeighbors(st))
	want := []ToRSession{
		{Name: "h1", Neighbor: netip.MustParseAddr("10.255.1.1"), State: "Established", Established: true, Received: 1},
		{Name: "h2", Neighbor: netip.MustParseAddr("10.255.2.2"), State: "Active Socket: Connection refused"},
		{Name: "h3", Neighbor: netip.MustParseAddr("10.255.1.3"), State: "down"},
		{Name: "h1", Neighbor: st.Hosts[2].UnderlayIP6, State: "Established", Established: true, Received: 1, Family: "ipv6"},
	}
	if d := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{})); d != "" {
		t.Errorf("parseBirdProtocols mismatch (-want +got):\n%s", d)
	}
}

func TestParseFRRSummary(t *testing.T) {
	t.Parallel()
	out := `{"routerId":"10.255.0.253","as":64512,"peers":{
		"10.255.1.1":{"remoteAs":64512,"state":"Established","pfxRcd":1,"desc":"sklab-h1"},
		"10.255.2.2":{"remoteAs":64512,"state":"Active","pfxRcd":0},
		"10.9.9.9":{"state":"Established"}}}`
	st := torState(ToRFRR, 2)
	got, err := parseFRRSummary([]byte(out), torNeighbors(st), false)
	if err != nil {
		t.Fatal(err)
	}
	want := []ToRSession{
		{Name: "h1", Neighbor: netip.MustParseAddr("10.255.1.1"), State: "Established", Established: true, Received: 1},
		{Name: "h2", Neighbor: netip.MustParseAddr("10.255.2.2"), State: "Active"},
	}
	if d := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{})); d != "" {
		t.Errorf("parseFRRSummary mismatch (-want +got):\n%s", d)
	}
	st6 := torState6(ToRFRR, 1)
	h1 := st6.Hosts[2]
	out6 := `{"peers":{"` + h1.UnderlayIP6.String() + `":{"state":"Established","pfxRcd":2}}}`
	got, err = parseFRRSummary([]byte(out6), torNeighbors(st6), true)
	want = []ToRSession{{Name: "h1", Neighbor: h1.UnderlayIP6, State: "Established", Established: true, Received: 2, Family: "ipv6"}}
	if d := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{})); err != nil || d != "" {
		t.Errorf("parseFRRSummary, IPv6 sessions: %v (-want +got):\n%s", err, d)
	}
	if _, err := parseFRRSummary([]byte("% Unknown command"), nil, false); err == nil {
		t.Error("parseFRRSummary of an error message succeeded")
	}
}

func TestFRRAddNeighborCommands(t *testing.T) {
	t.Parallel()
	got := frrAddNeighborCommands(64512, torNeighbor{Name: "h4", Node: "sklab-h4", Addr: netip.MustParseAddr("10.255.2.4")}, false)
	want := []string{
		"-c", "configure terminal", "-c", "router bgp 64512",
		"-c", "neighbor 10.255.2.4 peer-group hosts", "-c", "neighbor 10.255.2.4 description sklab-h4",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("frrAddNeighborCommands mismatch (-want +got):\n%s", d)
	}
}

func TestResolveToRNS(t *testing.T) {
	t.Parallel()
	st := torState(ToRBIRD, 1)
	for _, name := range []string{"tor", "sklab-tor"} {
		if got, err := st.resolveNS(name); err != nil || got != "sklab-tor" {
			t.Errorf("resolveNS(%q) = %q, %v; want sklab-tor", name, got, err)
		}
	}
	st.ToR = nil
	if got, err := st.resolveNS("tor"); err == nil {
		t.Errorf("resolveNS(tor) without a ToR = %q, want an error", got)
	}
}
