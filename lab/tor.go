package lab

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/template"

	"github.com/skeinnet/skein/api"
)

// The top-of-rack routers a lab can run (Config.ToR).
const (
	ToRBIRD = "bird"
	ToRFRR  = "frr"
)

// ToR timers: the data-centre profile the agents use too (see package bgp).
// The ToR knows a host before its agent starts, so it dials first: its
// first attempt 1 s after the host is configured (BIRD's connect delay,
// 0.75-1 s with its jitter; FRR dials at once) and a refused one retried
// after 1 s, where the host's GoBGP only dials 1-2 s after it adds the ToR.
// A join then has its session within ~1 s (issue 11: 0.79-0.96 s measured
// against 1.08-1.98 s with BIRD's 5 s defaults).
const (
	torHoldTime     = 9
	torKeepalive    = 3
	torConnectRetry = 1
	torRestartTime  = 120
)

// ToRPeerName is the external BGP peer (bgppeers/<name>) the lab registers
// for the ToR when every host shares one subnet; with more subnets each host
// gets its own, ToRPeerName + "-h<index>", for the ToR's address on the
// host's subnet.
const ToRPeerName = "tor"

// ToRPeerName6 is the external BGP peer for the ToR's IPv6 address when it
// peers over IPv6 too (ToR.IPv6Sessions); per host, ToRPeerName6 +
// "-h<index>" as for ToRPeerName.
const ToRPeerName6 = "tor6"

// ToR is the lab's top-of-rack router: a namespace with one leg per
// underlay subnet, IP forwarding on, running BIRD or FRR as route reflector
// for every host.
type ToR struct {
	// Kind is "bird" or "frr".
	Kind  string `json:"kind"`
	NetNS string `json:"netns"`
	// RouterID is the ToR's address on subnet 0, next to the underlay
	// namespace; on subnet s ≥ 1 it is UnderlayGateway(s).
	RouterID netip.Addr `json:"routerID"`
	ASN      uint32     `json:"asn"`
	// Dir holds the daemon's configuration, sockets, pid files and logs.
	Dir string `json:"dir"`
	// Config is the BGP daemon's configuration file (bird.conf, bgpd.conf).
	Config string `json:"config"`
	// Socket is BIRD's control socket, or the directory of FRR's vty sockets.
	Socket string `json:"socket"`
	// LogPath is the BGP daemon's log (its stdout and stderr).
	LogPath string `json:"logPath"`
	// PIDs are the daemons' pids (bird; or zebra and bgpd), 0 while stopped.
	PIDs []int `json:"pids"`
	// IPv6Sessions: the ToR peers with every host over IPv6 as well, for
	// IPv6 routes, its IPv4 sessions carrying IPv4 only
	// (Config.ToRIPv6Sessions).
	IPv6Sessions bool `json:"ipv6Sessions,omitempty"`
}

// ToRAddr returns the ToR's address on subnet s: the gateway of host
// subnets, and 10.255.0.253 on subnet 0, whose .254 is the underlay namespace.
func ToRAddr(subnet int) netip.Addr {
	if subnet == 0 {
		return UnderlayAddr(0, 253)
	}
	return UnderlayGateway(subnet)
}

// ToRAddr6 returns the ToR's IPv6 address on subnet s: the IPv6 gateway of
// host subnets, and fd00:255:0::fd on subnet 0, whose ::fe is the underlay
// namespace.
func ToRAddr6(subnet int) netip.Addr {
	if subnet == 0 {
		return UnderlayAddr6(0, 253)
	}
	return UnderlayGateway6(subnet)
}

// torPrefixes returns the ToR's addresses on subnet s for an underlay of
// families u.
func torPrefixes(u string, subnet int) []netip.Prefix {
	v4, v6 := underlayFamilies(u)
	var out []netip.Prefix
	if v4 {
		out = append(out, netip.PrefixFrom(ToRAddr(subnet), UnderlayPrefix(subnet).Bits()))
	}
	if v6 {
		out = append(out, netip.PrefixFrom(ToRAddr6(subnet), UnderlayPrefix6(subnet).Bits()))
	}
	return out
}

// torAddrFor returns the ToR's address on subnet s in the family of addr
// (a host's UnderlayIP): IPv6 for an IPv6-only host.
func torAddrFor(addr netip.Addr, subnet int) netip.Addr {
	if addr.Is6() {
		return ToRAddr6(subnet)
	}
	return ToRAddr(subnet)
}

func torNS(lab string) string { return lab + "-tor" }

// torLeg names the ToR's leg on subnet s: the bridge port in the underlay
// namespace and the interface in the ToR namespace.
func torLeg(subnet int) (port, iface string) {
	return "vt" + strconv.Itoa(subnet), "eth" + strconv.Itoa(subnet)
}

// newToR plans the ToR of lab, with its files under runDir.
func newToR(lab, runDir, kind string, asn uint32) ToR {
	dir := filepath.Join(runDir, "tor")
	t := ToR{Kind: kind, NetNS: torNS(lab), RouterID: ToRAddr(0), ASN: asn, Dir: dir}
	switch kind {
	case ToRBIRD:
		t.Config = filepath.Join(dir, "bird.conf")
		t.Socket = filepath.Join(dir, "bird.ctl")
		t.LogPath = filepath.Join(dir, "bird.log")
	case ToRFRR:
		t.Config = filepath.Join(dir, "frr", "bgpd.conf")
		t.Socket = filepath.Join(dir, "frr")
		t.LogPath = filepath.Join(dir, "frr", "bgpd.log")
	}
	return t
}

// frrDir is the directory FRR's daemons own (they run as user frr).
func (t ToR) frrDir() string { return t.Socket }

// torNeighbor is one host as the ToR sees it.
type torNeighbor struct {
	Name  string     // BIRD protocol name and description: the host's short name
	Node  string     // the node name
	Addr  netip.Addr // the host's underlay address
	Local netip.Addr // the ToR's address on the host's subnet
	// Local6 is the ToR's IPv6 address on the host's subnet, the next hop
	// of the IPv6 routes it reflects to the host; set when the underlay
	// has IPv6.
	Local6 netip.Addr
	// Addr6 is the host's IPv6 underlay address, the ToR's IPv6 neighbour
	// with IPv6 sessions.
	Addr6 netip.Addr
}

// name6 is the BIRD protocol name of the host's IPv6 session.
func (n torNeighbor) name6() string { return n.Name + "_6" }

// torNeighbors lists the hosts of st as BGP neighbours of the ToR, by index.
func torNeighbors(st State) []torNeighbor {
	hs := slices.Clone(st.Hosts)
	slices.SortFunc(hs, func(a, b Host) int { return a.Index - b.Index })
	_, v6 := underlayFamilies(st.Underlay)
	out := make([]torNeighbor, 0, len(hs))
	for _, h := range hs {
		n := torNeighbor{
			Name:  shortName(st.Name, h.Name),
			Node:  h.Name,
			Addr:  h.UnderlayIP,
			Local: torAddrFor(h.UnderlayIP, h.Subnet),
		}
		if v6 {
			n.Local6, n.Addr6 = ToRAddr6(h.Subnet), h.UnderlayIP6
		}
		out = append(out, n)
	}
	return out
}

// torConfigData is what the config templates render.
type torConfigData struct {
	Lab          string
	RouterID     netip.Addr
	ASN          uint32
	Hold         int
	Keepalive    int
	ConnectRetry int
	RestartTime  int
	LogPath      string
	Neighbors    []torNeighbor
	// V6 adds the IPv6 unicast family (MP-BGP over the IPv4 sessions) when
	// the underlay has IPv6.
	V6 bool
	// Sessions6 moves the IPv6 family to sessions over IPv6, one per host;
	// Keep6 reflects IPv6 routes with their next hop unchanged (the hosts
	// share one subnet, so a host's UnderlayIP6 is on-link for the others).
	Sessions6, Keep6 bool
}

func torData(st State) torConfigData {
	t := st.ToR
	return torConfigData{
		Lab:          st.Name,
		RouterID:     t.RouterID,
		ASN:          t.ASN,
		Hold:         torHoldTime,
		Keepalive:    torKeepalive,
		ConnectRetry: torConnectRetry,
		RestartTime:  torRestartTime,
		LogPath:      t.LogPath,
		Neighbors:    torNeighbors(st),
		// MP-BGP: IPv6 unicast over the IPv4 sessions of a dual-stack
		// underlay.
		V6:        st.Underlay == UnderlayDual,
		Sessions6: t.IPv6Sessions && st.Underlay == UnderlayDual,
		Keep6:     st.Subnets <= 1,
	}
}

// birdTemplate is the ToR's BIRD 2 configuration: an iBGP route reflector
// for the hosts that installs what it learns in its kernel, so it forwards
// between the subnets.
var birdTemplate = template.Must(template.New("bird.conf").Parse(`# BIRD 2 top-of-rack route reflector for Skein lab {{.Lab}} (generated).
router id {{.RouterID}};

# Interfaces, for direct next hops.
protocol device {
}

# Install the best routes in the ToR's kernel, so that it forwards between
# subnets; never learn routes from the kernel.
protocol kernel {
	ipv4 {
		import none;
		export all;
	};
}
{{- if .V6}}

protocol kernel {
	ipv6 {
		import none;
		export all;
	};
}
{{- end}}

# Every host is an iBGP route-reflector client on a directly connected subnet.
template bgp skeinhost {
{{- template "client" .}}
	ipv4 {
		import all;
		export all;
		# Reflected routes get the ToR as next hop: a block of a host on
		# another subnet is then reachable via an on-link gateway.
		next hop self on;
	};
{{- if and .V6 (not .Sessions6)}}
	# IPv6 blocks over the same IPv4 session (MP-BGP), reflected the same
	# way with the ToR's IPv6 address on the host's subnet as next hop.
	ipv6 {
		import all;
		export all;
		next hop self on;
	};
{{- end}}
}
{{range .Neighbors}}
protocol bgp {{.Name}} from skeinhost {
	description "{{.Node}}";
	local {{.Local}} as {{$.ASN}};
	neighbor {{.Addr}} as {{$.ASN}};
{{- if and $.V6 (not $.Sessions6)}}
	ipv6 {
		next hop address {{.Local6}};
	};
{{- end}}
}
{{end}}
{{- if .Sessions6}}
# IPv6 routes over IPv6 sessions, host UnderlayIP6 to the ToR's IPv6
# address on the host's subnet; the IPv4 sessions above carry IPv4 only.
template bgp skeinhost6 {
{{- template "client" .}}
	ipv6 {
		import all;
		export all;
{{- if .Keep6}}
		# One subnet: reflected routes keep the owner's UnderlayIP6.
		next hop keep on;
{{- else}}
		next hop self on;
{{- end}}
	};
}
{{range .Neighbors}}
protocol bgp {{.Name}}_6 from skeinhost6 {
	description "{{.Node}}";
	local {{.Local6}} as {{$.ASN}};
	neighbor {{.Addr6}} as {{$.ASN}};
}
{{end}}
{{- end}}
{{- /* What every host session shares, over IPv4 and over IPv6. */ -}}
{{define "client"}}
	local as {{.ASN}};
	direct;
	rr client;
	rr cluster id {{.RouterID}};
	graceful restart on;
	graceful restart time {{.RestartTime}};
	hold time {{.Hold}};
	keepalive time {{.Keepalive}};
	connect delay time {{.ConnectRetry}};
	connect retry time {{.ConnectRetry}};
{{- end}}`))

// frrBGPTemplate is the ToR's bgpd configuration, the FRR equivalent of
// birdTemplate. Reflected iBGP routes keep their next hop unless
// next-hop-self is forced.
var frrBGPTemplate = template.Must(template.New("bgpd.conf").Parse(`! FRR top-of-rack route reflector for Skein lab {{.Lab}} (generated).
frr defaults datacenter
hostname {{.Lab}}-tor
log file {{.LogPath}}
!
router bgp {{.ASN}}
 bgp router-id {{.RouterID}}
 bgp cluster-id {{.RouterID}}
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 bgp graceful-restart
 bgp graceful-restart restart-time {{.RestartTime}}
 timers bgp {{.Keepalive}} {{.Hold}}
 neighbor hosts peer-group
 neighbor hosts remote-as {{.ASN}}
 neighbor hosts timers connect {{.ConnectRetry}}
{{- range .Neighbors}}
 neighbor {{.Addr}} peer-group hosts
 neighbor {{.Addr}} description {{.Node}}
{{- end}}
{{- if .Sessions6}}
 ! IPv6 sessions, host UnderlayIP6 to the ToR, for IPv6 routes only.
 neighbor hosts6 peer-group
 neighbor hosts6 remote-as {{.ASN}}
 neighbor hosts6 timers connect {{.ConnectRetry}}
{{- range .Neighbors}}
 neighbor {{.Addr6}} peer-group hosts6
 neighbor {{.Addr6}} description {{.Node}}
{{- end}}
{{- end}}
 !
 address-family ipv4 unicast
  neighbor hosts activate
  neighbor hosts route-reflector-client
  neighbor hosts next-hop-self force
 exit-address-family
{{- if .Sessions6}}
 !
 ! IPv6 blocks over the IPv6 sessions only.
 address-family ipv6 unicast
  neighbor hosts6 activate
  neighbor hosts6 route-reflector-client
{{- if not .Keep6}}
  neighbor hosts6 next-hop-self force
{{- end}}
 exit-address-family
{{- else if .V6}}
 !
 ! IPv6 blocks over the same IPv4 sessions (MP-BGP); next hop self is the
 ! ToR's global IPv6 address on the host's interface.
 address-family ipv6 unicast
  neighbor hosts activate
  neighbor hosts route-reflector-client
  neighbor hosts next-hop-self force
 exit-address-family
{{- end}}
!
`))

// frrZebraConfig is zebra's configuration: zebra installs bgpd's routes in
// the ToR's kernel.
func frrZebraConfig(st State) string {
	return fmt.Sprintf("! zebra for Skein lab %s (generated).\nhostname %s-tor\nlog file %s\n!\n",
		st.Name, st.Name, filepath.Join(st.ToR.frrDir(), "zebra.log"))
}

// torConfig renders the BGP daemon's configuration for the hosts of st.
func torConfig(st State) ([]byte, error) {
	if st.ToR == nil {
		return nil, fmt.Errorf("lab %s has no ToR", st.Name)
	}
	tmpl := birdTemplate
	switch st.ToR.Kind {
	case ToRBIRD:
	case ToRFRR:
		tmpl = frrBGPTemplate
	default:
		return nil, fmt.Errorf("tor kind %q: want %s or %s", st.ToR.Kind, ToRBIRD, ToRFRR)
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, torData(st)); err != nil {
		return nil, fmt.Errorf("render %s: %w", tmpl.Name(), err)
	}
	return b.Bytes(), nil
}

// frrAddNeighborCommands are the vtysh arguments that add a host to a
// running bgpd without touching the other sessions.
func frrAddNeighborCommands(asn uint32, n torNeighbor, sessions6 bool) []string {
	out := []string{
		"-c", "configure terminal",
		"-c", fmt.Sprintf("router bgp %d", asn),
		"-c", fmt.Sprintf("neighbor %s peer-group hosts", n.Addr),
		"-c", fmt.Sprintf("neighbor %s description %s", n.Addr, n.Node),
	}
	if sessions6 && n.Addr6.IsValid() {
		out = append(out,
			"-c", fmt.Sprintf("neighbor %s peer-group hosts6", n.Addr6),
			"-c", fmt.Sprintf("neighbor %s description %s", n.Addr6, n.Node))
	}
	return out
}

// torPeers returns the external BGP peers the lab registers for the ToR:
// one for every node when there is one host subnet, else one per host for
// the ToR's address on the host's own subnet, so that the session and the
// next hops it brings are on-link.
func torPeers(st State, hosts []Host) []api.BGPPeer {
	if st.ToR == nil {
		return nil
	}
	sessions6 := torData(st).Sessions6
	if st.Subnets <= 1 {
		peer := ToRAddr(1)
		if v4, _ := underlayFamilies(st.Underlay); !v4 {
			peer = ToRAddr6(1)
		}
		out := []api.BGPPeer{{
			Name: ToRPeerName, PeerIP: peer, ASN: st.ToR.ASN,
			Description: st.ToR.Kind + " top-of-rack route reflector",
		}}
		if sessions6 {
			out = append(out, api.BGPPeer{
				Name: ToRPeerName6, PeerIP: ToRAddr6(1), ASN: st.ToR.ASN,
				Description: st.ToR.Kind + " top-of-rack route reflector, IPv6 session",
			})
		}
		return out
	}
	out := make([]api.BGPPeer, 0, len(hosts))
	for _, h := range hosts {
		out = append(out, api.BGPPeer{
			Name: ToRPeerName + "-" + shortName(st.Name, h.Name), PeerIP: torAddrFor(h.UnderlayIP, h.Subnet), ASN: st.ToR.ASN, Node: h.Name,
			Description: fmt.Sprintf("%s top-of-rack route reflector on subnet %d", st.ToR.Kind, h.Subnet),
		})
		if sessions6 {
			out = append(out, api.BGPPeer{
				Name: ToRPeerName6 + "-" + shortName(st.Name, h.Name), PeerIP: ToRAddr6(h.Subnet), ASN: st.ToR.ASN, Node: h.Name,
				Description: fmt.Sprintf("%s top-of-rack route reflector on subnet %d, IPv6 session", st.ToR.Kind, h.Subnet),
			})
		}
	}
	return out
}

// ToRSession is one BGP session of the ToR as its daemon reports it.
type ToRSession struct {
	// Name is the host's short name ("h1").
	Name     string     `json:"name"`
	Neighbor netip.Addr `json:"neighbor"`
	// State is the daemon's word: BIRD's protocol info ("Established",
	// "Active", "Connect"...), FRR's peer state.
	State string `json:"state"`
	// Established reports whether the session is up.
	Established bool `json:"established"`
	// Received counts the prefixes learned from the host, when known.
	Received int `json:"received"`
	// Family is "ipv6" for a session over IPv6 (ToR.IPv6Sessions), whose
	// Neighbor is the host's UnderlayIP6; "" for the IPv4 sessions.
	Family string `json:"family,omitempty"`
}

// parseBirdProtocols reads `birdc show protocols all` (or `show
// protocols`): the BGP protocols named after the hosts of neighbors become
// sessions, with their imported route counts when shown.
func parseBirdProtocols(out string, neighbors []torNeighbor) []ToRSession {
	byName := make(map[string]ToRSession, 2*len(neighbors))
	for _, n := range neighbors {
		byName[n.Name] = ToRSession{Name: n.Name, Neighbor: n.Addr}
		if n.Addr6.IsValid() {
			byName[n.name6()] = ToRSession{Name: n.Name, Neighbor: n.Addr6, Family: "ipv6"}
		}
	}
	var ss []ToRSession
	cur := -1 // index in ss of the protocol whose details follow
	for _, line := range strings.Split(out, "\n") {
		if line == "" {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			var n int
			if _, err := fmt.Sscanf(strings.TrimSpace(line), "Routes: %d imported", &n); err == nil && cur >= 0 {
				ss[cur].Received = n
			}
			continue
		}
		cur = -1
		f := strings.Fields(line)
		// name proto table state since [since-time] info...
		if len(f) < 4 || f[1] != "BGP" {
			continue
		}
		s, ok := byName[f[0]]
		if !ok {
			continue
		}
		// The info column ("Established", "Active Socket: ...") follows
		// the state and the since date or time; without info the state
		// ("up", "start", "down") is all there is.
		info := f[4:]
		for len(info) > 0 && info[0][0] >= '0' && info[0][0] <= '9' {
			info = info[1:]
		}
		s.State = f[3]
		if len(info) > 0 {
			s.State = strings.Join(info, " ")
			s.Established = info[0] == "Established"
		}
		ss = append(ss, s)
		cur = len(ss) - 1
	}
	return ss
}

// frrSummary is the part of `show bgp ipv4 unicast summary json` the lab reads.
type frrSummary struct {
	Peers map[string]struct {
		State  string `json:"state"`
		PfxRcd int    `json:"pfxRcd"`
		Desc   string `json:"desc"`
	} `json:"peers"`
}

// parseFRRSummary reads `show bgp ipv4 unicast summary json`, or with v6
// `show bgp ipv6 unicast summary json` for the hosts' IPv6 sessions.
func parseFRRSummary(out []byte, neighbors []torNeighbor, v6 bool) ([]ToRSession, error) {
	var s frrSummary
	if err := json.Unmarshal(out, &s); err != nil {
		return nil, fmt.Errorf("parse bgp summary: %w", err)
	}
	var ss []ToRSession
	for _, n := range neighbors {
		addr, family := n.Addr, ""
		if v6 {
			addr, family = n.Addr6, "ipv6"
		}
		p, ok := s.Peers[addr.String()]
		if !ok || !addr.IsValid() {
			continue
		}
		ss = append(ss, ToRSession{Name: n.Name, Neighbor: addr, State: p.State, Established: p.State == "Established", Received: p.PfxRcd, Family: family})
	}
	return ss, nil
}
