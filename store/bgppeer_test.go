package store

import (
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skeinnet/skein/api"
)

var addrComparer = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func TestBGPPeerCRUD(t *testing.T) {
	c := newClient(t, startEtcd(t))
	ctx := ctxTimeout(t)

	tor := api.BGPPeer{Name: "tor", PeerIP: netip.MustParseAddr("10.255.1.254"), ASN: 64512, Description: "rack 1"}
	spine := api.BGPPeer{Name: "spine", PeerIP: netip.MustParseAddr("10.0.0.1"), ASN: 65000, Node: "n1", Port: 1179}

	if err := c.CreateBGPPeer(ctx, tor); err != nil {
		t.Fatalf("CreateBGPPeer(tor): %v", err)
	}
	if err := c.CreateBGPPeer(ctx, spine); err != nil {
		t.Fatalf("CreateBGPPeer(spine): %v", err)
	}
	dup := tor
	dup.PeerIP = netip.MustParseAddr("10.9.9.9")
	if err := c.CreateBGPPeer(ctx, dup); !errors.Is(err, ErrExists) {
		t.Errorf("CreateBGPPeer(duplicate name) = %v, want ErrExists", err)
	}
	got, err := c.GetBGPPeer(ctx, "tor")
	if err != nil {
		t.Fatalf("GetBGPPeer: %v", err)
	}
	if d := cmp.Diff(tor, got, addrComparer); d != "" {
		t.Errorf("GetBGPPeer after a refused duplicate (-want +got):\n%s", d)
	}

	// The key is as documented, so agents find the raw value in Snapshot.Other
	// and decode it with api.DecodeBGPPeer.
	inv, err := c.Inventory(ctx)
	if err != nil {
		t.Fatalf("Inventory: %v", err)
	}
	raw, ok := inv.Other["bgppeers/tor"]
	if !ok {
		t.Fatalf("Snapshot.Other has no bgppeers/tor: %v", inv.Other)
	}
	if p, err := api.DecodeBGPPeer(raw); err != nil || p.Name != "tor" {
		t.Errorf("DecodeBGPPeer(Other[bgppeers/tor]) = %+v, %v", p, err)
	}

	// Put replaces.
	tor.ASN = 65001
	if err := c.PutBGPPeer(ctx, tor); err != nil {
		t.Fatalf("PutBGPPeer: %v", err)
	}
	list, err := c.ListBGPPeers(ctx)
	if err != nil {
		t.Fatalf("ListBGPPeers: %v", err)
	}
	if d := cmp.Diff([]api.BGPPeer{spine, tor}, list, addrComparer); d != "" {
		t.Errorf("ListBGPPeers (-want +got):\n%s", d)
	}

	if err := c.DeleteBGPPeer(ctx, "tor"); err != nil {
		t.Fatalf("DeleteBGPPeer: %v", err)
	}
	if err := c.DeleteBGPPeer(ctx, "tor"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteBGPPeer = %v, want ErrNotFound", err)
	}
	if _, err := c.GetBGPPeer(ctx, "tor"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetBGPPeer after delete = %v, want ErrNotFound", err)
	}
	// A deleted name can be created again.
	if err := c.CreateBGPPeer(ctx, tor); err != nil {
		t.Errorf("CreateBGPPeer after delete: %v", err)
	}
}

func TestBGPPeerInvalidRefused(t *testing.T) {
	c := newClient(t, startEtcd(t))
	ctx := ctxTimeout(t)
	bad := []api.BGPPeer{
		{Name: "tor", PeerIP: netip.MustParseAddr("10.0.0.1"), ASN: 0},
		{Name: "tor", PeerIP: netip.MustParseAddr("10.0.0.1"), ASN: api.ASTrans},
		{Name: "a/b", PeerIP: netip.MustParseAddr("10.0.0.1"), ASN: 64512},
		{Name: "tor", PeerIP: netip.MustParseAddr("fe80::1"), ASN: 64512}, // link-local: no session source for it
	}
	for _, p := range bad {
		if err := c.CreateBGPPeer(ctx, p); err == nil {
			t.Errorf("CreateBGPPeer(%+v) = nil, want an error", p)
		}
		if err := c.PutBGPPeer(ctx, p); err == nil {
			t.Errorf("PutBGPPeer(%+v) = nil, want an error", p)
		}
	}
	for _, name := range []string{"", "a/b"} {
		if _, err := c.GetBGPPeer(ctx, name); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("GetBGPPeer(%q) = %v, want a key error", name, err)
		}
		if err := c.DeleteBGPPeer(ctx, name); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("DeleteBGPPeer(%q) = %v, want a key error", name, err)
		}
	}
	list, err := c.ListBGPPeers(ctx)
	if err != nil || len(list) != 0 {
		t.Errorf("ListBGPPeers after refused writes = %+v, %v; want none", list, err)
	}
}

// TestBGPPeerCreateRace: of many concurrent creates of one name exactly one
// wins; the others get ErrExists.
func TestBGPPeerCreateRace(t *testing.T) {
	c := newClient(t, startEtcd(t))
	ctx := ctxTimeout(t)
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = c.CreateBGPPeer(ctx, api.BGPPeer{Name: "tor", PeerIP: netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), ASN: 64512})
		})
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrExists):
			t.Errorf("create %d: %v, want nil or ErrExists", i, err)
		}
	}
	if won != 1 {
		t.Errorf("%d creates succeeded, want exactly 1", won)
	}
}

func TestListBGPPeersReportsCorruptValues(t *testing.T) {
	c := newClient(t, startEtcd(t))
	ctx := ctxTimeout(t)
	good := api.BGPPeer{Name: "good", PeerIP: netip.MustParseAddr("10.0.0.1"), ASN: 64512}
	if err := c.CreateBGPPeer(ctx, good); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"bgppeers/broken":   "{not json",
		"bgppeers/invalid":  `{"name":"invalid","peerIP":"10.0.0.2","asn":0}`,
		"bgppeers/misnamed": `{"name":"other","peerIP":"10.0.0.3","asn":64512}`,
	} {
		if _, err := c.Etcd().Put(ctx, c.Prefix()+k, v); err != nil {
			t.Fatal(err)
		}
	}
	list, err := c.ListBGPPeers(ctx)
	if d := cmp.Diff([]api.BGPPeer{good}, list, addrComparer); d != "" {
		t.Errorf("ListBGPPeers kept (-want +got):\n%s", d)
	}
	if err == nil {
		t.Fatal("ListBGPPeers = nil error, want the corrupt keys named")
	}
	for _, k := range []string{"bgppeers/broken", "bgppeers/invalid", `names peer "other"`} {
		if !strings.Contains(err.Error(), k) {
			t.Errorf("ListBGPPeers error %q does not mention %s", err, k)
		}
	}
}
