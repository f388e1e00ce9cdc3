package nflog

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/skeinnet/skein/internal/nstest"
)

// TestReadLogged logs UDP to port 9999 arriving in a namespace and checks the
// reader sees the packet with its prefix, addresses and ports, and nothing
// for port 9998, which no rule logs; over IPv4 and over IPv6.
func TestReadLogged(t *testing.T) {
	if unix.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	t.Run("IPv4", func(t *testing.T) {
		testReadLogged(t, netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("192.0.2.2/24"))
	})
	t.Run("IPv6", func(t *testing.T) {
		testReadLogged(t, netip.MustParsePrefix("fd00:2::1/64"), netip.MustParsePrefix("fd00:2::2/64"))
	})
}

func testReadLogged(t *testing.T, pa, pb netip.Prefix) {
	a, b := nstest.New(t), nstest.New(t)
	for _, ns := range []*nstest.NS{a, b} {
		// Addresses usable at once: no duplicate address detection.
		if err := ns.Do(func() error {
			return os.WriteFile("/proc/sys/net/ipv6/conf/default/accept_dad", []byte("0"), 0o644)
		}); err != nil {
			t.Fatal(err)
		}
	}
	nstest.Veth(t, a, b, "veth0", pa, pb)
	// A static neighbor entry: what is under test is the log, not the
	// resolution of b's address.
	la, err := a.Handle.LinkByName("veth0")
	if err != nil {
		t.Fatal(err)
	}
	lb, err := b.Handle.LinkByName("veth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Handle.NeighSet(&netlink.Neigh{LinkIndex: la.Attrs().Index, IP: pb.Addr().AsSlice(), HardwareAddr: lb.Attrs().HardwareAddr, State: netlink.NUD_PERMANENT}); err != nil {
		t.Fatal(err)
	}
	dst := func(port uint16) string { return netip.AddrPortFrom(pb.Addr(), port).String() }
	const group = 27
	nc := b.Nftables(t)
	tbl := nc.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "t"})
	accept := nftables.ChainPolicyAccept
	ch := nc.AddChain(&nftables.Chain{Table: tbl, Name: "in", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	nc.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x27, 0x0f}},
		&expr.Counter{}, // tells, on failure, whether the rule saw the packets
		&expr.Log{Key: 1<<unix.NFTA_LOG_PREFIX | 1<<unix.NFTA_LOG_GROUP, Group: group, Data: []byte("test rule")},
	}})
	if err := nc.Flush(); err != nil {
		t.Fatalf("add log rule: %v", err)
	}
	r, err := Open(group, b.Fd())
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer func() { _ = r.Close() }()
	var conn net.Conn
	if err := a.Do(func() error {
		var err error
		conn, err = net.Dial("udp", dst(9998))
		return err
	}); err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer func() { _ = conn.Close() }()
	var conn2 net.Conn
	if err := a.Do(func() error {
		var err error
		conn2, err = net.Dial("udp", dst(9999))
		return err
	}); err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer func() { _ = conn2.Close() }()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan Packet, 16)
	go func() { _ = r.Run(ctx, func(p Packet) { got <- p }) }()
	for ctx.Err() == nil {
		_, _ = conn.Write([]byte("not logged"))
		_, _ = conn2.Write([]byte("logged"))
		select {
		case p := <-got:
			if p.DstPort != 9999 {
				t.Fatalf("logged a packet no rule logs: %+v", p)
			}
			want := Packet{Prefix: "test rule", Src: pa.Addr(), Dst: pb.Addr(),
				Proto: unix.IPPROTO_UDP, SrcPort: p.SrcPort, DstPort: 9999, InIf: p.InIf}
			if p != want {
				t.Fatalf("got %+v, want %+v", p, want)
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	matched := "unknown"
	if rules, err := nc.GetRules(tbl, ch); err == nil && len(rules) == 1 {
		for _, e := range rules[0].Exprs {
			if c, ok := e.(*expr.Counter); ok {
				matched = fmt.Sprint(c.Packets)
			}
		}
	}
	t.Fatalf("no logged packet within 10s (the log rule matched %s packets)", matched)
}
