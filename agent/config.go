package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
)

// Config configures one agent.
type Config struct {
	NodeName     string            // required
	Etcd         store.Config      // required unless EmbeddedEtcd
	EmbeddedEtcd bool              // optional: run an in-process etcd (single machine)
	EmbeddedTLS  EmbeddedTLS       // optional: TLS of the embedded etcd's client listener
	Iface        string            // optional: underlay interface; default the default-route interface
	UnderlayIP   netip.Addr        // optional: overrides the address found on Iface (IPv4, or IPv6 on an IPv6-only node)
	UnderlayIP6  netip.Addr        // optional: overrides the IPv6 underlay address found on Iface
	SocketPath   string            // optional, default /run/skein/skeind.sock
	StateDir     string            // optional, default /var/lib/skein
	DebugAddr    string            // optional, default 127.0.0.1:9595; "" or "off" disables
	Version      string            // optional, reported in the node record and status
	Cooldown     time.Duration     // optional, default 30s: rest of a freed address before reuse
	Resync       time.Duration     // optional, default 60s: periodic dataplane resync
	Labels       map[string]string // optional: node labels, e.g. skein.dev/route-reflector
	// TakeOverNode lets this agent take the node name from another identity
	// that is not alive (a re-installed host); optional, default false.
	TakeOverNode bool
	Log          *slog.Logger // optional

	// DockerPluginSocket is where the Docker (libnetwork) network and IPAM
	// driver listens; optional, default "" = no Docker driver.
	DockerPluginSocket string
	// DockerHost is the Docker engine API the driver reads container names
	// and labels from; optional, "" = endpoints get network labels only.
	DockerHost string

	// BlockReleaseGrace is how long a block other than the home block must
	// stay empty (no allocation, no address cooling down) before the agent
	// returns it to the pool; optional, default 0 = never. skeind's
	// --block-release-grace defaults to DefaultBlockReleaseGrace.
	BlockReleaseGrace time.Duration
	// ConntrackAllPods keeps connection tracking on for all pod traffic;
	// optional, default false: TCP between pods that no policy selects on
	// this host skips conntrack (policy.ApplierConfig.PodCIDRs). Set it
	// where a conntrack-based service proxy NATs pod-to-pod connections.
	ConntrackAllPods bool
	// NoDropLog leaves the drop log out: no log rules in the policy table,
	// no NFLOG reader, an empty /debug/drops (skeind --drop-log=false).
	NoDropLog bool
}

// EmbeddedTLS is the server side of TLS for the embedded etcd. The agent
// itself connects to it like any client, with Config.Etcd's TLS files.
type EmbeddedTLS struct {
	CertFile, KeyFile string // optional: serve https:// with this certificate
	ClientCAFile      string // optional: require client certificates signed by this CA
}

// Defaults for Config.
const (
	DefaultSocket    = api.DefaultSocket
	DefaultStateDir  = "/var/lib/skein"
	DefaultDebugAddr = "127.0.0.1:9595"
)

// DefaultBlockReleaseGrace is skeind's default --block-release-grace: long
// enough that a node's block does not go back and forth with the churn of a
// rolling update, short enough that a pool does not run dry after one.
const DefaultBlockReleaseGrace = 10 * time.Minute

func (c Config) withDefaults() Config {
	if c.SocketPath == "" {
		c.SocketPath = DefaultSocket
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.DebugAddr == "" {
		c.DebugAddr = DefaultDebugAddr
	}
	if c.Cooldown == 0 {
		c.Cooldown = 30 * time.Second
	}
	if c.Resync == 0 {
		c.Resync = 60 * time.Second
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("--node-name is required"))
	} else if err := api.ValidateNodeName(c.NodeName); err != nil {
		errs = append(errs, fmt.Errorf("--node-name: %w", err))
	}
	if !c.EmbeddedEtcd && len(c.Etcd.Endpoints) == 0 {
		errs = append(errs, errors.New("--etcd-endpoints is required (or --embedded-etcd)"))
	}
	if err := c.Etcd.Validate(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.validateEmbeddedTLS()...)
	if c.BlockReleaseGrace < 0 {
		errs = append(errs, fmt.Errorf("--block-release-grace %s: must not be negative (0 disables)", c.BlockReleaseGrace))
	}
	errs = append(errs, c.validateUnderlay()...)
	return errors.Join(errs...)
}

// validateUnderlay checks --underlay-ip and --underlay-ip6: unicast
// addresses of their family, and one IPv6 address when both are IPv6.
func (c Config) validateUnderlay() []error {
	var errs []error
	ip, ip6 := c.UnderlayIP, c.UnderlayIP6
	if ip.IsValid() && (ip.Is4In6() || !usableUnderlay(ip)) {
		errs = append(errs, fmt.Errorf("--underlay-ip %s: not a global unicast address (IPv4, or IPv6 on an IPv6-only node)", ip))
	}
	if ip6.IsValid() && (!ip6.Is6() || ip6.Is4In6() || !usableUnderlay(ip6)) {
		errs = append(errs, fmt.Errorf("--underlay-ip6 %s: not a global IPv6 address", ip6))
	}
	if ip.Is6() && ip6.IsValid() && ip != ip6 {
		errs = append(errs, fmt.Errorf("--underlay-ip %s is IPv6 (an IPv6-only node), so --underlay-ip6 %s must be the same address or left out", ip, ip6))
	}
	return errs
}

// usableUnderlay reports whether a can be a tunnel endpoint or next hop
// between hosts: unicast, not loopback, not link-local (an IPv6 one is
// only reachable with a zone).
func usableUnderlay(a netip.Addr) bool { return a.IsGlobalUnicast() }

// validateEmbeddedTLS checks the embedded etcd's TLS flags against each
// other and against the agent's own client settings.
func (c Config) validateEmbeddedTLS() []error {
	t := c.EmbeddedTLS
	if t == (EmbeddedTLS{}) {
		return nil
	}
	if !c.EmbeddedEtcd {
		return []error{errors.New("--embedded-etcd-cert, --embedded-etcd-key and --embedded-etcd-client-ca need --embedded-etcd")}
	}
	var errs []error
	switch {
	case t.CertFile == "" && t.KeyFile != "":
		errs = append(errs, fmt.Errorf("--embedded-etcd-key %s given without --embedded-etcd-cert", t.KeyFile))
	case t.CertFile != "" && t.KeyFile == "":
		errs = append(errs, fmt.Errorf("--embedded-etcd-cert %s given without --embedded-etcd-key", t.CertFile))
	case t.CertFile == "":
		errs = append(errs, fmt.Errorf("--embedded-etcd-client-ca %s given without --embedded-etcd-cert and --embedded-etcd-key", t.ClientCAFile))
	}
	if t.CertFile == "" {
		return errs
	}
	for _, u := range c.Etcd.Endpoints {
		if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "unixs://") {
			errs = append(errs, fmt.Errorf("--etcd-endpoints %s: the embedded etcd serves TLS (--embedded-etcd-cert), use https://", u))
		}
	}
	if c.Etcd.CAFile == "" {
		errs = append(errs, errors.New("--embedded-etcd-cert: the agent connects to its embedded etcd over TLS too: give --etcd-ca (the CA that signed the certificate)"))
	}
	if t.ClientCAFile != "" && c.Etcd.CertFile == "" {
		errs = append(errs, errors.New("--embedded-etcd-client-ca: etcd then requires client certificates, the agent's own included: give --etcd-cert and --etcd-key"))
	}
	return errs
}
