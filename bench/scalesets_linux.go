package main

import (
	"bytes"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"

	"github.com/skeinnet/skein/policy"
)

// setPoller looks for an address in the address sets of a host's nftables
// table that hold a known address of the same namespace. It backs `nft
// monitor`, which can lose events (its socket overflows) when a whole
// table of tens of thousands of elements is rewritten.
type setPoller struct {
	ns   netns.NsHandle
	conn *nftables.Conn
	sets []*nftables.Set
}

// newSetPoller finds the candidate sets in ns: plain address sets that
// hold known.
func newSetPoller(ns string, known netip.Addr) (*setPoller, error) {
	h, err := netns.GetFromPath(nsPath(ns))
	if err != nil {
		return nil, fmt.Errorf("open namespace %s: %w", ns, err)
	}
	conn, err := policy.NewConn(nftables.WithNetNSFd(int(h)))
	if err != nil {
		h.Close()
		return nil, err
	}
	p := &setPoller{ns: h, conn: conn}
	sets, err := conn.GetSets(&nftables.Table{Family: nftables.TableFamilyINet, Name: policy.TableName})
	if err != nil {
		p.close()
		return nil, fmt.Errorf("sets in %s: %w", ns, err)
	}
	for _, s := range sets {
		if s.KeyType != nftables.TypeIPAddr || s.Interval {
			continue
		}
		if ok, _ := p.in(s, known); ok {
			p.sets = append(p.sets, s)
		}
	}
	if len(p.sets) == 0 {
		p.close()
		return nil, fmt.Errorf("no address set in %s holds %s", ns, known)
	}
	return p, nil
}

func (p *setPoller) in(s *nftables.Set, a netip.Addr) (bool, error) {
	elems, err := p.conn.GetSetElements(s)
	if err != nil {
		return false, err
	}
	key := a.AsSlice()
	for _, e := range elems {
		if bytes.Equal(e.Key, key) {
			return true, nil
		}
	}
	return false, nil
}

// has reports whether a is in one of the candidate sets.
func (p *setPoller) has(a netip.Addr) bool {
	for _, s := range p.sets {
		if ok, _ := p.in(s, a); ok { // a set being rebuilt reads as absent
			return true
		}
	}
	return false
}

func (p *setPoller) close() { p.ns.Close() }
