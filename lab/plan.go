package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/skeinnet/skein/api"
)

// Defaults and fixed names of the lab layout.
const (
	DefaultName              = "sklab"
	DefaultHosts             = 3
	DefaultContainersPerHost = 2
	DefaultBackend           = string(api.BackendVXLAN)
	DefaultPodCIDR           = "10.244.0.0/16"
	// DefaultRunDirBase holds one run directory per lab, named after it.
	DefaultRunDirBase = "/run/skein-lab"

	// BridgeName is the underlay bridge inside the underlay namespace.
	BridgeName = "ubr"
	// HostIface is every host's underlay interface.
	HostIface = "eth0"
	// ContainerIface is the interface the plugin creates in each container.
	ContainerIface = "eth0"
	// UnderlayMTU is the MTU of the bridge and every underlay veth.
	UnderlayMTU = 1500
	// EtcdClientPort is the etcd client port on the underlay gateway address.
	EtcdClientPort = 2379
	// AgentDebugAddr is each agent's debug address inside its own namespace
	// (each namespace has its own loopback, so every agent can use it).
	AgentDebugAddr = "127.0.0.1:9595"
	// CNINetwork is the network name in the lab's conflists.
	CNINetwork = "skein"
	// CNIVersion is the spec version of the lab's conflists.
	CNIVersion = "1.1.0"
	// PluginType is the CNI plugin binary name.
	PluginType = "skein-cni"

	// Underlay families (Config.Underlay): IPv4 only, both, IPv6 only.
	UnderlayIPv4 = "ipv4"
	UnderlayDual = "dual"
	UnderlayIPv6 = "ipv6"
	// DefaultUnderlay is the IPv4 underlay.
	DefaultUnderlay = UnderlayIPv4

	// MaxHostsPerSubnet bounds host indices: .1 to .253, .254 is the gateway.
	MaxHostsPerSubnet = 253
	// MaxSubnets bounds Config.Subnets.
	MaxSubnets = 4
	// MaxEtcdMembers bounds Config.EtcdMembers.
	MaxEtcdMembers = 5

	stateFile  = "lab.json"
	markerFile = ".skein-lab"
	// tlsDir holds the lab's CA and certificates, under the run directory.
	tlsDir = "tls"
)

// Binaries the lab runs from Config.BinDir.
const (
	binSkeind = "skeind"
	binSkein  = "skein"
	binCNI    = PluginType
)

// ErrExists is returned by Up when a lab of that name already exists.
var ErrExists = errors.New("lab exists")

// ErrNotFound is returned when a lab, host or container is unknown.
var ErrNotFound = errors.New("not found")

// Config configures a lab.
type Config struct {
	// Name prefixes every namespace and names the run directory; optional,
	// default "sklab". Lowercase letters and digits, starting with a letter, at
	// most 16 characters (no "-", so "<name>-" names only this lab's objects).
	Name string
	// Hosts is the number of hosts Up creates; optional, default 3 (0 means
	// default; use a negative value for none).
	Hosts int
	// ContainersPerHost is the number of containers Up creates on each host;
	// optional, default 2 (0 means default; a negative value means none).
	ContainersPerHost int
	// Backend is the cluster backend, "vxlan" or "bgp"; optional, default "vxlan".
	Backend string
	// ToR adds a top-of-rack router namespace running a real BGP daemon,
	// "bird" (BIRD 2) or "frr" (FRR's bgpd and zebra), as route reflector
	// for every host; the cluster then runs without the node mesh. Needs
	// Backend "bgp", or "vxlan" with VXLANDirectRouting, where the ToR only
	// routes the underlay between subnets (its BGP sessions stay idle);
	// optional, default none (hosts share one L2 subnet).
	ToR string
	// ToRIPv6Sessions makes the ToR peer with every host over IPv6 too
	// (host UnderlayIP6 to the ToR's IPv6 address on its subnet) and carry
	// IPv6 routes there only, the IPv4 sessions carrying IPv4 only; the lab
	// registers a second external peer for the ToR's IPv6 address. Needs a
	// ToR, backend bgp and Underlay "dual"; optional, default off (IPv6
	// routes over the IPv4 sessions, MP-BGP).
	ToRIPv6Sessions bool
	// VXLANDirectRouting turns on the cluster's VXLAN direct routing
	// (hosts on one subnet route pod blocks via each other's underlay
	// address); optional, default off.
	VXLANDirectRouting bool
	// Encryption "wireguard" makes the cluster encrypt pod traffic between
	// hosts (as `skein cluster init --encryption wireguard`); optional,
	// default none.
	Encryption string
	// Underlay is the underlay's address families: "ipv4", "dual" (hosts,
	// gateways and etcd have both) or "ipv6" (IPv6 only: the hosts have no
	// IPv4 underlay address and etcd listens on UnderlayGateway6(0));
	// optional, default "ipv4".
	Underlay string
	// Subnets is the number of underlay subnets the hosts are spread over
	// (host i on subnet 1+(i-1)%Subnets); only the ToR routes between them.
	// More than one needs a ToR; optional, default 1.
	Subnets int
	// EtcdMembers is the number of etcd members, each its own process, as
	// one raft cluster; optional, default 1, at most MaxEtcdMembers.
	EtcdMembers int
	// EtcdTLS makes etcd serve TLS only, to clients (which must present the
	// lab's client certificate) and between members; the lab writes a CA and
	// the certificates under RunDir/tls. Optional, default plaintext.
	EtcdTLS bool
	// BinDir holds skeind, skein and skein-cni; required.
	BinDir string
	// RunDir holds lab.json, sockets, logs and agent state; optional, default
	// /run/skein-lab/<Name>.
	RunDir string
	// PodCIDR is the cluster's pools, comma separated; optional, default
	// 10.244.0.0/16. An IPv6 pool next to the IPv4 one makes the lab
	// dual-stack.
	PodCIDR string
	// BlockSize is the IPv4 pools' block prefix length; optional, default 26.
	BlockSize int
	// BlockSizeV6 is the IPv6 pools' block prefix length; optional,
	// default 122.
	BlockSizeV6 int
	// Out receives one progress line per step; optional.
	Out io.Writer
	// Log receives debug events; optional, default discard.
	Log *slog.Logger

	// etcdCommand replaces the etcd process's program and leading arguments
	// (default BinDir/skein); tests run their own binary as etcd.
	etcdCommand []string
	// noAgents skips starting skeind (and so containers); tests of the
	// underlay use it.
	noAgents bool
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,15}$`)

// ValidateName checks a lab name.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("lab name %q: must be 1-16 lowercase letters or digits, starting with a letter", name)
	}
	return nil
}

// DefaultRunDir returns the default run directory of the lab named name.
func DefaultRunDir(name string) string {
	return filepath.Join(DefaultRunDirBase, name)
}

// withDefaults fills in every optional field.
func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.Hosts == 0 {
		c.Hosts = DefaultHosts
	} else if c.Hosts < 0 {
		c.Hosts = 0
	}
	if c.ContainersPerHost == 0 {
		c.ContainersPerHost = DefaultContainersPerHost
	} else if c.ContainersPerHost < 0 {
		c.ContainersPerHost = 0
	}
	if c.Backend == "" {
		c.Backend = DefaultBackend
	}
	if c.Underlay == "" {
		c.Underlay = DefaultUnderlay
	}
	if c.Subnets == 0 {
		c.Subnets = 1
	}
	if c.EtcdMembers == 0 {
		c.EtcdMembers = 1
	}
	if c.RunDir == "" {
		c.RunDir = DefaultRunDir(c.Name)
	}
	if c.PodCIDR == "" {
		c.PodCIDR = DefaultPodCIDR
	}
	if c.BlockSize == 0 {
		c.BlockSize = api.DefaultBlockSize
	}
	if c.BlockSizeV6 == 0 {
		c.BlockSizeV6 = api.DefaultBlockSizeV6
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// validate checks a Config with defaults applied.
func (c Config) validate() error {
	var errs []error
	if err := ValidateName(c.Name); err != nil {
		errs = append(errs, err)
	}
	if c.Hosts > MaxHostsPerSubnet {
		errs = append(errs, fmt.Errorf("hosts %d: at most %d", c.Hosts, MaxHostsPerSubnet))
	}
	if c.EtcdMembers < 1 || c.EtcdMembers > MaxEtcdMembers {
		errs = append(errs, fmt.Errorf("etcd members %d: must be between 1 and %d", c.EtcdMembers, MaxEtcdMembers))
	}
	if err := validateUnderlay(c.Underlay); err != nil {
		errs = append(errs, err)
	}
	switch api.Backend(c.Backend) {
	case api.BackendVXLAN, api.BackendBGP:
	default:
		errs = append(errs, fmt.Errorf("backend %q: must be vxlan or bgp", c.Backend))
	}
	if api.Backend(c.Backend) == api.BackendBGP {
		// Sessions, router ids and IPv4 next hops are IPv4; IPv6 routes
		// go via the hosts' IPv6 underlay addresses.
		if v4, _ := underlayFamilies(c.Underlay); !v4 {
			errs = append(errs, fmt.Errorf("backend bgp: needs an IPv4 underlay (sessions and router ids are IPv4), not %s; use --underlay dual", c.Underlay))
		} else if _, v6 := underlayFamilies(c.Underlay); !v6 && strings.Contains(c.PodCIDR, ":") {
			errs = append(errs, fmt.Errorf("backend bgp with IPv6 pods: needs --underlay dual (IPv6 routes go via the hosts' IPv6 underlay addresses), not %s", c.Underlay))
		}
	}
	if c.VXLANDirectRouting && api.Backend(c.Backend) != api.BackendVXLAN {
		errs = append(errs, fmt.Errorf("vxlan direct routing: needs backend vxlan, not %s", c.Backend))
	}
	switch c.ToR {
	case "":
		if c.Subnets != 1 {
			errs = append(errs, fmt.Errorf("subnets %d: hosts on more than one subnet need a router between them (--tor bird or --tor frr)", c.Subnets))
		}
	case ToRBIRD, ToRFRR:
		if api.Backend(c.Backend) != api.BackendBGP && !c.VXLANDirectRouting {
			errs = append(errs, fmt.Errorf("tor %s: needs backend bgp, or vxlan with direct routing, not %s", c.ToR, c.Backend))
		}
		if c.Subnets < 1 || c.Subnets > MaxSubnets {
			errs = append(errs, fmt.Errorf("subnets %d: must be between 1 and %d", c.Subnets, MaxSubnets))
		}
		// The ToR's router id and IPv4 sessions need IPv4 on every leg.
		if v4, _ := underlayFamilies(c.Underlay); !v4 {
			errs = append(errs, fmt.Errorf("tor %s: needs an IPv4 underlay (its router id and sessions; IPv6 sessions come with --underlay dual --tor-ipv6-sessions), not %s", c.ToR, c.Underlay))
		}
	default:
		errs = append(errs, fmt.Errorf("tor %q: must be %s or %s", c.ToR, ToRBIRD, ToRFRR))
	}
	if c.ToRIPv6Sessions && (c.ToR == "" || api.Backend(c.Backend) != api.BackendBGP || c.Underlay != UnderlayDual) {
		errs = append(errs, fmt.Errorf("tor ipv6 sessions: need --tor bird|frr, --backend bgp and --underlay dual (have tor %q, backend %s, underlay %s)", c.ToR, c.Backend, c.Underlay))
	}
	if c.BinDir == "" {
		errs = append(errs, errors.New("bin dir is required (a directory with skeind, skein and skein-cni)"))
	}
	if !filepath.IsAbs(c.RunDir) {
		errs = append(errs, fmt.Errorf("run dir %q: must be absolute", c.RunDir))
	}
	if _, err := c.cluster(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// cluster returns the cluster record the lab writes.
func (c Config) cluster() (api.Cluster, error) {
	var pools []api.Pool
	for i, s := range strings.Split(c.PodCIDR, ",") {
		cidr, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return api.Cluster{}, fmt.Errorf("pod CIDR[%d]: %w", i, err)
		}
		pool := api.Pool{CIDR: cidr, BlockSize: c.BlockSize}
		if cidr.Addr().Is6() {
			pool.BlockSize = c.BlockSizeV6
		}
		if err := pool.Validate(); err != nil {
			return api.Cluster{}, fmt.Errorf("pod CIDR[%d]: %w", i, err)
		}
		pools = append(pools, pool)
	}
	cl := api.Cluster{
		Pools:   pools,
		Backend: api.Backend(c.Backend),
		VXLAN:   api.VXLANConfig{VNI: api.DefaultVNI, Port: api.DefaultVXLANPort, DirectRouting: c.VXLANDirectRouting},
	}
	if c.Encryption != "" {
		cl.Encryption = api.Encryption(c.Encryption)
		cl = cl.Defaulted()
		if err := cl.Validate(); err != nil {
			return api.Cluster{}, fmt.Errorf("encryption: %w", err)
		}
	}
	if cl.Backend == api.BackendBGP {
		// With a top-of-rack route reflector the hosts peer only with it.
		cl.BGP = &api.BGPConfig{ASN: api.DefaultASN, NodeMesh: c.ToR == ""}
	}
	if err := cl.Validate(); err != nil {
		return api.Cluster{}, err
	}
	return cl, nil
}

// UnderlayPrefix returns the underlay network of subnet s: 10.255.s.0/24.
// Without a ToR every host is on subnet 0, whose .254 is the underlay
// namespace (etcd). With a ToR, subnet 0 links the underlay namespace and
// the ToR only, and hosts sit on subnets 1..Subnets, each routed by the ToR.
func UnderlayPrefix(subnet int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 255, byte(subnet), 0}), 24)
}

// UnderlayAddr returns host index's address on subnet s: 10.255.s.index.
func UnderlayAddr(subnet, index int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 255, byte(subnet), byte(index)})
}

// UnderlayGateway returns the gateway of subnet s, 10.255.s.254: the
// underlay namespace on subnet 0, the ToR on the others.
func UnderlayGateway(subnet int) netip.Addr {
	return UnderlayAddr(subnet, 254)
}

// UnderlayPrefix6 returns the IPv6 underlay network of subnet s,
// fd00:255:s::/64, the IPv6 twin of UnderlayPrefix.
func UnderlayPrefix6(subnet int) netip.Prefix {
	return netip.PrefixFrom(UnderlayAddr6(subnet, 0), 64)
}

// UnderlayAddr6 returns host index's IPv6 address on subnet s,
// fd00:255:s::index (s and index as hexadecimal groups: host 10 on subnet
// 0 is fd00:255:0::a).
func UnderlayAddr6(subnet, index int) netip.Addr {
	return netip.AddrFrom16([16]byte{
		0xfd, 0x00, 0x02, 0x55, byte(subnet >> 8), byte(subnet),
		14: byte(index >> 8), 15: byte(index),
	})
}

// UnderlayGateway6 returns the IPv6 gateway of subnet s, fd00:255:s::fe:
// the underlay namespace on subnet 0, the ToR on the others.
func UnderlayGateway6(subnet int) netip.Addr {
	return UnderlayAddr6(subnet, 254)
}

// validateUnderlay checks a Config.Underlay value.
func validateUnderlay(u string) error {
	switch u {
	case UnderlayIPv4, UnderlayDual, UnderlayIPv6:
		return nil
	}
	return fmt.Errorf("underlay %q: must be %s, %s or %s", u, UnderlayIPv4, UnderlayDual, UnderlayIPv6)
}

// underlayFamilies reports which families an underlay ("" = ipv4) carries.
func underlayFamilies(u string) (v4, v6 bool) {
	switch u {
	case UnderlayDual:
		return true, true
	case UnderlayIPv6:
		return false, true
	}
	return true, false
}

// underlayPrefixes returns the addresses of index on subnet s for an
// underlay of families u: IPv4 first.
func underlayPrefixes(u string, subnet, index int) []netip.Prefix {
	v4, v6 := underlayFamilies(u)
	var out []netip.Prefix
	if v4 {
		out = append(out, netip.PrefixFrom(UnderlayAddr(subnet, index), UnderlayPrefix(subnet).Bits()))
	}
	if v6 {
		out = append(out, netip.PrefixFrom(UnderlayAddr6(subnet, index), UnderlayPrefix6(subnet).Bits()))
	}
	return out
}

// underlayGateways returns the gateways of subnet s for an underlay of
// families u: IPv4 first.
func underlayGateways(u string, subnet int) []netip.Addr {
	v4, v6 := underlayFamilies(u)
	var out []netip.Addr
	if v4 {
		out = append(out, UnderlayGateway(subnet))
	}
	if v6 {
		out = append(out, UnderlayGateway6(subnet))
	}
	return out
}

// hostSubnet returns the subnet of host index: 0 without a ToR, else
// 1..subnets round robin.
func hostSubnet(tor string, subnets, index int) int {
	if tor == "" {
		return 0
	}
	return 1 + (index-1)%max(subnets, 1)
}

// subnetBridge names the underlay bridge of subnet s: "ubr" for subnet 0,
// "ubr<s>" for the others.
func subnetBridge(subnet int) string {
	if subnet == 0 {
		return BridgeName
	}
	return BridgeName + strconv.Itoa(subnet)
}

// Namespace names.

func underlayNS(lab string) string { return lab + "-ul" }

func hostName(lab string, index int) string { return fmt.Sprintf("%s-h%d", lab, index) }

func containerName(host string, index int) string { return fmt.Sprintf("%s-c%d", host, index) }

// bridgePort names the bridge side of host index's veth, inside the underlay
// namespace.
func bridgePort(index int) string { return fmt.Sprintf("vh%d", index) }

// netnsPath is where `ip netns` keeps a named namespace.
func netnsPath(name string) string { return filepath.Join("/var/run/netns", name) }

// etcdPorts returns member i's (1-based) client and peer ports: 2379 and
// 2380 for the first, as etcd's own, then 22379/22380, 32379/32380 … as in
// etcd's Procfile for a local cluster.
func etcdPorts(i int) (client, peer uint16) {
	if i == 1 {
		return EtcdClientPort, EtcdClientPort + 1
	}
	return uint16(i*10000 + EtcdClientPort), uint16(i*10000 + EtcdClientPort + 1)
}

// etcdMembers plans the lab's n etcd members. They share the underlay
// namespace: clients reach member i on the gateway address at its own port
// (and at its own unix socket from the root namespace), the members reach
// each other on that namespace's loopback. Member 1 keeps the single-member
// layout (etcd/, etcd.sock). With TLS every URL is https:// or unixs://.
//
// On an IPv6-only underlay the client URL is on UnderlayGateway6(0); on a
// dual one it stays on the IPv4 gateway and ClientURL6 adds the IPv6 one.
func etcdMembers(lab, runDir string, n int, tls bool, underlay string) []Etcd {
	scheme, sockScheme := "http", "unix"
	if tls {
		scheme, sockScheme = "https", "unixs"
	}
	ms := make([]Etcd, 0, n)
	for i := 1; i <= n; i++ {
		base := "etcd"
		if i > 1 {
			base += strconv.Itoa(i)
		}
		cp, pp := etcdPorts(i)
		dir := filepath.Join(runDir, base)
		gws := underlayGateways(underlay, 0)
		m := Etcd{
			Name:      "etcd" + strconv.Itoa(i),
			NetNS:     underlayNS(lab),
			ClientURL: fmt.Sprintf("%s://%s", scheme, netip.AddrPortFrom(gws[0], cp)),
			AdminURL:  sockScheme + "://" + filepath.Join(runDir, base+".sock"),
			PeerURL:   fmt.Sprintf("%s://%s", scheme, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), pp)),
			Dir:       dir,
			LogPath:   filepath.Join(dir, "etcd.log"),
		}
		if len(gws) > 1 {
			m.ClientURL6 = fmt.Sprintf("%s://%s", scheme, netip.AddrPortFrom(gws[1], cp))
		}
		if tls {
			m.CertFile = filepath.Join(runDir, tlsDir, m.Name+".pem")
			m.KeyFile = filepath.Join(runDir, tlsDir, m.Name+"-key.pem")
		}
		ms = append(ms, m)
	}
	return ms
}

// clientURLs returns every URL the member serves clients on.
func (m Etcd) clientURLs() []string {
	urls := []string{m.ClientURL}
	if m.ClientURL6 != "" {
		urls = append(urls, m.ClientURL6)
	}
	return append(urls, m.AdminURL)
}

// initialCluster renders the members as etcd's --initial-cluster.
func initialCluster(ms []Etcd) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.Name + "=" + m.PeerURL
	}
	return strings.Join(parts, ",")
}

// newHost plans host index of lab, with its files under runDir, on an
// underlay of families underlay ("" = ipv4). Its UnderlayIP is what its
// agent registers: IPv4, or IPv6 on an IPv6-only underlay.
func newHost(lab, runDir, underlay string, subnet, index int) Host {
	dir := filepath.Join(runDir, "h"+strconv.Itoa(index))
	var ip, ip6 netip.Addr
	for _, p := range underlayPrefixes(underlay, subnet, index) {
		if p.Addr().Is6() {
			ip6 = p.Addr()
		}
		if !ip.IsValid() {
			ip = p.Addr()
		}
	}
	return Host{
		Name:        hostName(lab, index),
		Index:       index,
		Subnet:      subnet,
		UnderlayIP:  ip,
		UnderlayIP6: ip6,
		Socket:      filepath.Join(dir, "skeind.sock"),
		StateDir:    filepath.Join(dir, "state"),
		LogPath:     filepath.Join(dir, "skeind.log"),
		DebugAddr:   AgentDebugAddr,
		CNIConfig:   filepath.Join(runDir, "cni", "h"+strconv.Itoa(index), "10-skein.conflist"),
	}
}

// underlayPrefixes returns the host's underlay addresses with their
// subnet's prefix length, IPv4 first.
func (h Host) underlayPrefixes() []netip.Prefix {
	var out []netip.Prefix
	if h.UnderlayIP.Is4() {
		out = append(out, netip.PrefixFrom(h.UnderlayIP, UnderlayPrefix(h.Subnet).Bits()))
	}
	if h.UnderlayIP6.IsValid() {
		out = append(out, netip.PrefixFrom(h.UnderlayIP6, UnderlayPrefix6(h.Subnet).Bits()))
	}
	return out
}

// dir returns the host's directory under the run directory.
func (h Host) dir() string { return filepath.Dir(h.Socket) }

// skeindArgs returns the agent's arguments: every etcd member's underlay
// URL (the client fails over between them) and, with TLS, the lab's client
// certificate.
func skeindArgs(h Host, etcdURLs []string, tls *TLSFiles) []string {
	args := []string{
		"--node-name", h.Name,
		"--etcd-endpoints", strings.Join(etcdURLs, ","),
		"--iface", HostIface,
		"--socket", h.Socket,
		"--state-dir", h.StateDir,
		"--debug-addr", h.DebugAddr,
	}
	if tls != nil {
		args = append(args, "--etcd-ca", tls.CA, "--etcd-cert", tls.Cert, "--etcd-key", tls.Key)
	}
	return args
}

// EtcdFlags names the flags of the hidden `skein lab etcd` command, which
// the lab starts with etcdArgs.
const (
	EtcdFlagDir            = "dir"
	EtcdFlagClientURLs     = "listen-client-urls"
	EtcdFlagPeerURL        = "peer-url"
	EtcdFlagName           = "name"
	EtcdFlagInitialCluster = "initial-cluster"
	EtcdFlagClusterToken   = "cluster-token"
	EtcdFlagCert           = "cert"
	EtcdFlagKey            = "key"
	EtcdFlagCA             = "ca"
)

// etcdArgs returns the arguments of `skein lab etcd` after the program name
// for member m of the cluster ms (a single member runs alone). With TLS
// (m.CertFile set) it serves and authenticates clients and peers with the
// lab's CA.
func etcdArgs(m Etcd, ms []Etcd, token string, tls *TLSFiles) []string {
	args := []string{
		"lab", "etcd",
		"--" + EtcdFlagDir, filepath.Join(m.Dir, "data"),
		"--" + EtcdFlagClientURLs, strings.Join(m.clientURLs(), ","),
		"--" + EtcdFlagPeerURL, m.PeerURL,
	}
	if len(ms) > 1 {
		args = append(args,
			"--"+EtcdFlagName, m.Name,
			"--"+EtcdFlagInitialCluster, initialCluster(ms),
			"--"+EtcdFlagClusterToken, token)
	}
	if tls != nil {
		args = append(args, "--"+EtcdFlagCert, m.CertFile, "--"+EtcdFlagKey, m.KeyFile, "--"+EtcdFlagCA, tls.CA)
	}
	return args
}

// ContainerOpts describes a container to add.
type ContainerOpts struct {
	// Name is the pod name; optional, default the container's short name
	// ("h1-c1").
	Name string
	// Namespace is the pod namespace; optional, default "default".
	Namespace string
	// Labels are the pod labels, passed as args.cni.labels; optional.
	Labels map[string]string
	// Ports are the pod's named ports, passed as args.skein.ports; optional.
	Ports []api.NamedPort
}

type cniLabel struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// pluginArgs is the "args" object of the plugin config: labels in
// args.cni.labels (the CNI convention), named ports in args.skein.ports
// (Skein's own; CNI has no convention for them).
type pluginArgs struct {
	CNI   *cniArgsConf   `json:"cni,omitempty"`
	Skein *skeinArgsConf `json:"skein,omitempty"`
}

type cniArgsConf struct {
	Labels []cniLabel `json:"labels"`
}

type skeinArgsConf struct {
	Ports []api.NamedPort `json:"ports"`
}

type pluginConf struct {
	Type   string      `json:"type"`
	Socket string      `json:"socket"`
	Args   *pluginArgs `json:"args,omitempty"`
}

type confList struct {
	CNIVersion string       `json:"cniVersion"`
	Name       string       `json:"name"`
	Plugins    []pluginConf `json:"plugins"`
}

// conflist renders the network config list a host's runtime uses; labels and
// ports, when given, go into the plugin's args as a runtime would inject them.
// Labels are sorted by key so the bytes are deterministic.
func conflist(socket string, labels map[string]string, ports []api.NamedPort) ([]byte, error) {
	p := pluginConf{Type: PluginType, Socket: socket}
	if len(labels) > 0 || len(ports) > 0 {
		p.Args = &pluginArgs{}
	}
	if len(labels) > 0 {
		keys := make([]string, 0, len(labels))
		for k := range labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		p.Args.CNI = &cniArgsConf{}
		for _, k := range keys {
			p.Args.CNI.Labels = append(p.Args.CNI.Labels, cniLabel{Key: k, Value: labels[k]})
		}
	}
	if len(ports) > 0 {
		p.Args.Skein = &skeinArgsConf{Ports: ports}
	}
	b, err := json.Marshal(confList{CNIVersion: CNIVersion, Name: CNINetwork, Plugins: []pluginConf{p}})
	if err != nil {
		return nil, fmt.Errorf("render conflist: %w", err)
	}
	return b, nil
}

// cniArgs returns the CNI_ARGS pairs a Kubernetes runtime would send.
func cniArgs(podNamespace, podName string) [][2]string {
	return [][2]string{
		{"IgnoreUnknown", "1"},
		{"K8S_POD_NAMESPACE", podNamespace},
		{"K8S_POD_NAME", podName},
	}
}

// argsOfRunDir reports whether args are those of a process the lab started
// for runDir: an agent's --socket, an etcd's --dir, or a ToR daemon's control
// socket (BIRD's -s, FRR's --vty_socket) under runDir.
func argsOfRunDir(args []string, runDir string) bool {
	mark := filepath.Clean(runDir) + "/"
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "--socket", "--" + EtcdFlagDir, "-s", "--vty_socket":
			if strings.HasPrefix(args[i+1], mark) {
				return true
			}
		}
	}
	return false
}

// shortName strips the lab prefix: "sklab-h1-c1" → "h1-c1".
func shortName(lab, name string) string {
	return strings.TrimPrefix(name, lab+"-")
}

// joinPrefixes renders addresses for progress lines: "a, b".
func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}
