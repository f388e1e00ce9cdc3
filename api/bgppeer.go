package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"unicode"
)

// BGPPeerKeyKind is the first key segment of external BGP peers:
// bgppeers/<name>.
const BGPPeerKeyKind = "bgppeers"

// ASTrans is AS_TRANS (RFC 6793), which 2-byte speakers see in place of a
// 4-byte ASN; no speaker may use it as its own.
const ASTrans = 23456

// MaxBGPPeerDescription bounds BGPPeer.Description.
const MaxBGPPeerDescription = 256

// BGPPeer is an external BGP neighbour (a top-of-rack router, a route
// reflector outside the cluster), at /skein/bgppeers/<name>. Agents of the
// nodes it applies to open a session with it.
type BGPPeer struct {
	// Name identifies the peer: a DNS label.
	Name string `json:"name"`
	// PeerIP is the neighbour's address. A session with an IPv4 address
	// carries IPv4 and IPv6 unicast (MP-BGP); one with an IPv6 address runs
	// from the node's UnderlayIP6 and carries IPv6 unicast only (IPv4 routes
	// with IPv4 next hops over IPv6, RFC 8950, are not supported).
	PeerIP netip.Addr `json:"peerIP"`
	// ASN is the neighbour's AS number: the cluster's for iBGP.
	ASN uint32 `json:"asn"`
	// Node limits the peer to one node; "" means every node.
	Node string `json:"node,omitempty"`
	// Port is the neighbour's TCP port; 0 means 179.
	Port int `json:"port,omitempty"`
	// Description is free text for operators.
	Description string `json:"description,omitempty"`
}

// BGPPeerKey returns the key of a peer relative to the store prefix:
// "bgppeers/<name>".
func BGPPeerKey(name string) string { return BGPPeerKeyKind + "/" + name }

var dnsLabelRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// ValidateASN reports why asn cannot be a BGP speaker's AS number, or nil:
// 0 is reserved and AS_TRANS (23456) stands in for 4-byte ASNs.
func ValidateASN(asn uint32) error {
	switch asn {
	case 0:
		return errors.New("asn 0 is reserved (want 1-4294967295)")
	case ASTrans:
		return fmt.Errorf("asn %d is AS_TRANS, reserved for 4-byte ASN transition (RFC 6793)", ASTrans)
	}
	return nil
}

// Validate reports everything wrong with p, or nil.
func (p BGPPeer) Validate() error {
	var errs []error
	if !dnsLabelRE.MatchString(p.Name) {
		errs = append(errs, fmt.Errorf("name %q: must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit", p.Name))
	}
	switch a := p.PeerIP; {
	case !a.IsValid():
		errs = append(errs, errors.New("peer IP: required"))
	case a.Is4In6():
		errs = append(errs, fmt.Errorf("peer IP %s: an IPv4-mapped IPv6 address; write the IPv4 address %s", a, a.Unmap()))
	case a.Zone() != "":
		errs = append(errs, fmt.Errorf("peer IP %s: must not have a zone", a))
	case a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		errs = append(errs, fmt.Errorf("peer IP %s: must be a unicast address", a))
	case a.Is6() && a.IsLinkLocalUnicast():
		// A link-local session would need an interface, and the routes it
		// brings link-local next hops, which Skein does not install.
		errs = append(errs, fmt.Errorf("peer IP %s: link-local addresses are not supported; use the peer's global (or ULA) address", a))
	}
	if err := ValidateASN(p.ASN); err != nil {
		errs = append(errs, err)
	}
	if p.Node != "" {
		if err := ValidateNodeName(p.Node); err != nil {
			errs = append(errs, err)
		}
	}
	if p.Port < 0 || p.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d: out of range 1-65535 (0 means 179)", p.Port))
	}
	if len(p.Description) > MaxBGPPeerDescription {
		errs = append(errs, fmt.Errorf("description: %d bytes, at most %d", len(p.Description), MaxBGPPeerDescription))
	}
	for _, r := range p.Description {
		if unicode.IsControl(r) {
			errs = append(errs, errors.New("description: control characters are not allowed"))
			break
		}
	}
	if len(errs) > 0 {
		name := p.Name
		if name == "" {
			name = "(unnamed)"
		}
		return fmt.Errorf("bgp peer %s: %w", name, errors.Join(errs...))
	}
	return nil
}

// DecodeBGPPeer decodes and validates a stored peer (the JSON value at
// BGPPeerKey, as in store.Snapshot.Other). Unknown fields are ignored so
// that older agents read peers written by newer CLIs.
func DecodeBGPPeer(raw []byte) (BGPPeer, error) {
	var p BGPPeer
	if err := CheckDuplicateKeys(raw, 0); err != nil {
		return BGPPeer{}, fmt.Errorf("decode bgp peer: %w", err)
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return BGPPeer{}, fmt.Errorf("decode bgp peer: %w", jsonError(err))
	}
	if err := p.Validate(); err != nil {
		return BGPPeer{}, err
	}
	return p, nil
}
