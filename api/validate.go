package api

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Sentinel errors callers branch on.
var (
	ErrOverlap = errors.New("pools overlap")
)

var nodeNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$`)

// ValidateNodeName reports why name cannot name a node (DNS-1123 subdomain-ish), or nil.
func ValidateNodeName(name string) error {
	if !nodeNameRE.MatchString(name) {
		return fmt.Errorf("node name %q: must be 1-63 lowercase letters, digits, '-' or '.', starting and ending with a letter or digit", name)
	}
	return nil
}

// Validate checks a Pool: a network address and a block size that fits its
// family (IPv4: up to /30; IPv6: /96 to /126).
func (p Pool) Validate() error {
	if !p.CIDR.IsValid() {
		return fmt.Errorf("pool: invalid CIDR")
	}
	if p.CIDR != p.CIDR.Masked() {
		return fmt.Errorf("pool %s: host bits set (did you mean %s?)", p.CIDR, p.CIDR.Masked())
	}
	if p.CIDR.Addr().Is4In6() {
		return fmt.Errorf("pool %s: an IPv4-mapped IPv6 prefix; write the IPv4 prefix instead", p.CIDR)
	}
	if p.CIDR.Addr().Is6() {
		lo := max(p.CIDR.Bits(), MinBlockSizeV6)
		if p.BlockSize < lo || p.BlockSize > MaxBlockSizeV6 {
			return fmt.Errorf("pool %s: IPv6 block size /%d must be between /%d and /%d", p.CIDR, p.BlockSize, lo, MaxBlockSizeV6)
		}
		return nil
	}
	if p.BlockSize < p.CIDR.Bits() || p.BlockSize > 30 {
		return fmt.Errorf("pool %s: block size /%d must be between /%d and /30", p.CIDR, p.BlockSize, p.CIDR.Bits())
	}
	return nil
}

// PoolsOf returns the pools of one family (v6 false: IPv4) in their order.
func PoolsOf(pools []Pool, v6 bool) []Pool {
	var out []Pool
	for _, p := range pools {
		if p.CIDR.Addr().Is6() == v6 {
			out = append(out, p)
		}
	}
	return out
}

// DualStack reports whether the pools hold IPv6 addresses.
func DualStack(pools []Pool) bool { return len(PoolsOf(pools, true)) > 0 }

// V6Only reports whether the pools are IPv6 only: every container gets an
// IPv6 address and no IPv4 one.
func V6Only(pools []Pool) bool { return DualStack(pools) && len(PoolsOf(pools, false)) == 0 }

// Validate checks the whole cluster config and fills nothing in; see Defaulted.
func (c Cluster) Validate() error {
	if len(c.Pools) == 0 {
		return fmt.Errorf("cluster: at least one pool is required")
	}
	for i, p := range c.Pools {
		if err := p.Validate(); err != nil {
			return fmt.Errorf("cluster: pools[%d]: %w", i, err)
		}
		for j := 0; j < i; j++ {
			if c.Pools[j].CIDR.Overlaps(p.CIDR) {
				return fmt.Errorf("cluster: pools[%d] %s and pools[%d] %s: %w", j, c.Pools[j].CIDR, i, p.CIDR, ErrOverlap)
			}
		}
	}
	switch c.Backend {
	case BackendVXLAN:
		if c.VXLAN.VNI < 1 || c.VXLAN.VNI > 1<<24-1 {
			return fmt.Errorf("cluster: vxlan vni %d out of range 1-16777215", c.VXLAN.VNI)
		}
		if c.VXLAN.Port < 1 || c.VXLAN.Port > 65535 {
			return fmt.Errorf("cluster: vxlan port %d out of range 1-65535", c.VXLAN.Port)
		}
	case BackendBGP:
		if c.BGP == nil || c.BGP.ASN == 0 {
			return fmt.Errorf("cluster: backend bgp needs an ASN")
		}
	default:
		return fmt.Errorf("cluster: unknown backend %q (want vxlan or bgp)", c.Backend)
	}
	return c.validateEncryption()
}

// Defaulted returns c with zero fields set to their defaults.
func (c Cluster) Defaulted() Cluster {
	for i := range c.Pools {
		if c.Pools[i].BlockSize == 0 {
			c.Pools[i].BlockSize = DefaultBlockSize
			if c.Pools[i].CIDR.Addr().Is6() {
				c.Pools[i].BlockSize = DefaultBlockSizeV6
			}
		}
	}
	if c.Backend == "" {
		c.Backend = BackendVXLAN
	}
	if c.VXLAN.VNI == 0 {
		c.VXLAN.VNI = DefaultVNI
	}
	if c.VXLAN.Port == 0 {
		c.VXLAN.Port = DefaultVXLANPort
	}
	if c.Backend == BackendBGP && c.BGP == nil {
		c.BGP = &BGPConfig{ASN: DefaultASN, NodeMesh: true}
	}
	return c.defaultEncryption()
}

// ParsePrefix parses a CIDR and names the field in its error.
func ParsePrefix(field, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%s: invalid CIDR %q: %w", field, s, err)
	}
	return p, nil
}

// ValidatePodNamespace reports why ns cannot be a pod's namespace, or nil:
// it must be a DNS-1123 label, as in Kubernetes, since it is a key segment
// (namespaces/<ns>) and what namespace selectors match.
func ValidatePodNamespace(ns string) error {
	if msg := dnsLabelMsg(ns); msg != "" {
		return errors.New(msg)
	}
	return nil
}

// ValidatePodName reports why name cannot be a pod's name, or nil. Names
// come from Kubernetes (DNS-1123 subdomains) or, for other runtimes, from
// container ids, so only what breaks "namespace/name" references is
// refused: '/', spaces and control characters, and more than 253 bytes.
func ValidatePodName(name string) error {
	if name == "" || len(name) > 253 || !utf8.ValidString(name) || strings.ContainsFunc(name, func(r rune) bool {
		return r == '/' || unicode.IsSpace(r) || unicode.IsControl(r)
	}) {
		return fmt.Errorf("invalid value %q: must be 1-253 bytes without '/', spaces or control characters", name)
	}
	return nil
}

// ValidateKubePodName reports why name cannot be a Kubernetes pod name
// (K8S_POD_NAME), or nil: a DNS-1123 subdomain.
func ValidateKubePodName(name string) error {
	if msg := dnsSubdomainMsg(name); msg != "" {
		return errors.New(msg)
	}
	return nil
}
