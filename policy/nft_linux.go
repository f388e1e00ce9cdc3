package policy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// sockBuf is the netlink socket buffer size the applier's connections should
// have: a rebuild of a table with 10 000-element sets is one batch of
// several hundred kilobytes, more than the default socket buffers hold.
const sockBuf = 16 << 20

// SockOptions returns the socket options for the nftables.Conn handed to
// NewApplier: buffers large enough for one-batch rebuilds of big tables
// (SO_SNDBUFFORCE/SO_RCVBUFFORCE, which need CAP_NET_ADMIN).
//
//	conn, err := nftables.New(nftables.WithSockOptions(policy.SockOptions()...))
func SockOptions() []nftables.SockOption {
	return []nftables.SockOption{func(c *netlink.Conn) error {
		rc, err := c.SyscallConn()
		if err != nil {
			return fmt.Errorf("netlink syscall conn: %w", err)
		}
		var serr error
		cerr := rc.Control(func(fd uintptr) {
			serr = errors.Join(
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sockBuf),
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, sockBuf),
			)
		})
		if err := errors.Join(cerr, serr); err != nil {
			return fmt.Errorf("set netlink socket buffers: %w", err)
		}
		return nil
	}}
}

// NewConn returns an nftables connection with SockOptions, plus opts (e.g.
// nftables.WithNetNSFd).
func NewConn(opts ...nftables.ConnOption) (*nftables.Conn, error) {
	c, err := nftables.New(append(opts, nftables.WithSockOptions(SockOptions()...))...)
	if err != nil {
		return nil, fmt.Errorf("nftables connection: %w", err)
	}
	return c, nil
}

// Applier writes Programs to the nftables table inet skein, which it owns
// entirely. It remembers what it last wrote: when only elements change (set
// members, dispatch map entries, anti-spoofing addresses) it updates
// elements; otherwise it rebuilds the whole table in one atomic batch. A
// failed batch leaves the previous table in place (the kernel commits a
// batch all or nothing) and makes the next Apply rebuild.
type Applier struct {
	conn *nftables.Conn
	log  *slog.Logger
	// beforeFlush, set by tests, may add to a batch before it is sent.
	beforeFlush func(c *nftables.Conn, t *nftables.Table)
	// podCIDRs are ApplierConfig.PodCIDRs, sorted (IPv4 first) and disjoint.
	podCIDRs []netip.Prefix
	// noDropLog is ApplierConfig.NoDropLog.
	noDropLog bool
	// ipv6: a pod pool is IPv6, so the table always handles IPv6.
	ipv6 bool

	mu    sync.Mutex // serializes Apply; guards the fields below
	last  *Ruleset   // what the table holds; nil: unknown, rebuild
	stats ApplyStats
}

// NewApplier returns an Applier over conn, which the caller creates with
// NewConn or SockOptions (bound to the right network namespace): with the
// default socket buffers, rebuilds of tables with large sets fail with
// "message too long". log is optional. It tracks all pod traffic; see
// ApplierConfig.PodCIDRs.
func NewApplier(conn *nftables.Conn, log *slog.Logger) *Applier {
	return NewApplierWith(ApplierConfig{Conn: conn, Log: log})
}

// ApplierConfig configures an Applier.
type ApplierConfig struct {
	// Conn is the nftables connection (see NewApplier); required.
	Conn *nftables.Conn
	// Log is optional.
	Log *slog.Logger
	// PodCIDRs are the cluster's pod pools; optional, default none. TCP
	// between two of their addresses skips conntrack unless one end is an
	// endpoint here that a policy selects. Leave it empty to track all pod
	// traffic, e.g. where a conntrack-based service proxy NATs pod to pod
	// connections (their replies need conntrack).
	PodCIDRs []netip.Prefix
	// NoDropLog leaves the drop log rules out of the table (the drops
	// stay): nothing reaches DropLogGroup.
	NoDropLog bool
}

// NewApplierWith returns an Applier configured by cfg.
func NewApplierWith(cfg ApplierConfig) *Applier {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var pods []netip.Prefix
	ipv6 := false
	for _, p := range cfg.PodCIDRs {
		if p.IsValid() {
			pods = append(pods, p.Masked())
			ipv6 = ipv6 || p.Addr().Is6()
		}
	}
	slices.SortFunc(pods, comparePrefix)
	return &Applier{conn: cfg.Conn, log: log.With("component", "policy"), podCIDRs: mergePrefixes(pods), noDropLog: cfg.NoDropLog, ipv6: ipv6}
}

// mergePrefixes drops the prefixes of sorted (by comparePrefix) that an
// earlier one covers: an interval set takes no overlapping elements. Sorted
// so, a prefix that overlaps an earlier one lies inside it.
func mergePrefixes(sorted []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range sorted {
		if n := len(out); n > 0 && out[n-1].Overlaps(p) {
			continue
		}
		out = append(out, p)
	}
	return out
}

var table = &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}

// Apply makes the table enforce p, in one batch: a rebuild of the whole
// table when the applier does not know what the table holds (first apply,
// after a failure or Reset), otherwise the difference with what it last
// wrote.
func (a *Applier) Apply(ctx context.Context, p *Program) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	start := time.Now()
	rs := render(p, a.ipv6)
	rs.PodCIDRs = a.podCIDRs
	if a.noDropLog {
		rs.WithoutDropLog()
	}
	var (
		err  error
		ops  int
		kind string
	)
	// Node joins and leaves are rare: a changed VXLAN filter rebuilds; so
	// does the first IPv6 address (or the last one going).
	if a.last == nil || !vxlanEqual(a.last.VXLAN, rs.VXLAN) || a.last.IPv6 != rs.IPv6 {
		kind = "rebuild"
		err = a.rebuild(rs)
		ops = 1
	} else {
		d := DiffRulesets(a.last, rs)
		ops = d.Len()
		kind = "elements"
		if d.Structural() {
			kind = "patch"
		}
		if ops > 0 {
			err = a.patch(d)
		}
	}
	if err := a.doneLocked(start, kind, ops, err); err != nil {
		return err
	}
	a.last = rs
	a.stats.Sets, a.stats.Rules, a.stats.Elements = rs.Counts()
	a.stats.Chains = rs.ChainCount()
	if ops > 0 {
		a.log.Debug("nftables applied", "op", kind, "count", ops, "dur", a.stats.LastDuration)
	}
	return nil
}

// ApplyElements makes the table enforce p when p differs from the program
// of the last apply only by the set elements chs name, in order (what
// Incremental returns for endpoints on other nodes): one batch of element
// updates against what the table holds, with no render and no diff of the
// whole table, so its cost is the elements'. Without a known table it
// applies p whole.
func (a *Applier) ApplyElements(ctx context.Context, p *Program, chs []SetChanges) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	a.mu.Lock()
	// An IPv6 element needs the IPv6 twins of the sets, which a table
	// without IPv6 lacks: a rebuild adds them.
	if a.last == nil || !sameFilterShape(a.last.VXLAN, p.VXLAN) || (!a.last.IPv6 && changesHaveIPv6(chs)) {
		a.mu.Unlock()
		return a.Apply(ctx, p)
	}
	defer a.mu.Unlock()
	start := time.Now()
	d := elementDiff(a.last, chs)
	ops := d.Len()
	var err error
	if ops > 0 {
		err = a.patch(d)
	}
	if err := a.doneLocked(start, "elements", ops, err); err != nil {
		return err
	}
	a.last.moveElements(d)
	a.stats.Sets, a.stats.Rules, a.stats.Elements = a.last.Counts()
	return nil
}

// doneLocked records an apply of the given kind ("rebuild", "patch" or
// "elements") in the stats, and wraps its error; after a failure the table's
// content is unknown, so the next Apply rebuilds it. a.mu must be held.
func (a *Applier) doneLocked(start time.Time, kind string, ops int, err error) error {
	a.stats.LastDuration = time.Since(start)
	a.stats.LastApply = time.Now()
	if err != nil {
		a.last = nil
		a.stats.Failures++
		a.stats.LastError = err.Error()
		if errors.Is(err, unix.EMSGSIZE) {
			err = fmt.Errorf("%w (create the connection with policy.NewConn or policy.SockOptions)", err)
		}
		return fmt.Errorf("apply nftables table inet %s (%s): %w", TableName, kind, err)
	}
	switch kind {
	case "rebuild":
		a.stats.Rebuilds++
	case "patch":
		a.stats.Patches++
	default:
		a.stats.Updates++
	}
	a.stats.LastKind = kind
	a.stats.LastError = ""
	a.stats.LastOps = ops
	return nil
}

// Stats returns counters and the size of the last applied table.
func (a *Applier) Stats() ApplyStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats
}

// Reset forgets what the table holds, so that the next Apply rebuilds it
// (drift repair).
func (a *Applier) Reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.last = nil
}

// Delete removes the table, if it exists.
func (a *Applier) Delete(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.last = nil
	a.conn.AddTable(table) // so that the delete cannot fail on a missing table
	a.conn.DelTable(table)
	if err := a.conn.Flush(); err != nil {
		return fmt.Errorf("delete nftables table inet %s: %w", TableName, err)
	}
	return nil
}

// Observed counts what the kernel's table holds.
type Observed struct {
	Chains   int `json:"chains"`
	Rules    int `json:"rules"`
	Sets     int `json:"sets"`
	Elements int `json:"elements"`
}

// Observe lists the table back from the kernel; a missing table is all zeros.
func (a *Applier) Observe(ctx context.Context) (Observed, error) {
	var o Observed
	if err := ctx.Err(); err != nil {
		return o, err
	}
	chains, err := a.conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return o, fmt.Errorf("list chains: %w", err)
	}
	for _, c := range chains {
		if c.Table.Name != TableName {
			continue
		}
		o.Chains++
		rules, err := a.conn.GetRules(table, c)
		if err != nil {
			return o, fmt.Errorf("list rules of chain %s: %w", c.Name, err)
		}
		o.Rules += len(rules)
	}
	if o.Chains == 0 {
		return o, nil
	}
	sets, err := a.conn.GetSets(table)
	if err != nil {
		return o, fmt.Errorf("list sets: %w", err)
	}
	for _, s := range sets {
		o.Sets++
		if s.Name == DropLogSet || s.Name == DropLogSet6 {
			continue // the log limits the packets add: not the program's
		}
		elems, err := a.conn.GetSetElements(s)
		if err != nil {
			return o, fmt.Errorf("list elements of set %s: %w", s.Name, err)
		}
		for _, e := range elems {
			if !e.IntervalEnd {
				o.Elements++
			}
		}
	}
	return o, nil
}

// Set declarations.
var (
	addrPortType   = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	addrPortType6  = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService)
	ifaceAddrType  = nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIPAddr)
	ifaceAddrType6 = nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIP6Addr)
)

// addrType returns the key type of an address of family v6 (or IPv4).
func addrType(v6 bool) nftables.SetDatatype {
	if v6 {
		return nftables.TypeIP6Addr
	}
	return nftables.TypeIPAddr
}

func peerSet(s *NFTSet) *nftables.Set {
	out := &nftables.Set{Table: table, Name: s.Name, KeyType: addrType(s.V6), Comment: s.Comment}
	switch s.Kind {
	case SetCIDRs:
		out.Interval = true
	case SetAddrPorts:
		out.KeyType, out.Concatenation = addrPortType, true
		if s.V6 {
			out.KeyType = addrPortType6
		}
	}
	return out
}

func trackedSet(v6 bool) *nftables.Set {
	if v6 {
		return &nftables.Set{Table: table, Name: TrackedAddrs6, KeyType: nftables.TypeIP6Addr}
	}
	return &nftables.Set{Table: table, Name: TrackedAddrs, KeyType: nftables.TypeIPAddr}
}

func podCIDRSet(v6 bool) *nftables.Set {
	if v6 {
		return &nftables.Set{Table: table, Name: PodCIDRSet6, KeyType: nftables.TypeIP6Addr, Interval: true}
	}
	return &nftables.Set{Table: table, Name: PodCIDRSet, KeyType: nftables.TypeIPAddr, Interval: true}
}

// addrsMap is the anti-spoofing verdict map of a family (see EndpointAddrs).
func addrsMap(v6 bool) *nftables.Set {
	if v6 {
		return &nftables.Set{Table: table, Name: EndpointAddrs6, KeyType: ifaceAddrType6, Concatenation: true, IsMap: true, DataType: nftables.TypeVerdict}
	}
	return &nftables.Set{Table: table, Name: EndpointAddrs, KeyType: ifaceAddrType, Concatenation: true, IsMap: true, DataType: nftables.TypeVerdict}
}

// naTargets6 is the set of addresses a container may advertise (NATargets6).
func naTargets6() *nftables.Set {
	return &nftables.Set{Table: table, Name: NATargets6, KeyType: ifaceAddrType6, Concatenation: true}
}

func dispatchMap(name string) *nftables.Set {
	// Host byte order is how nft(8) expects ifname keys, so listings show names.
	return &nftables.Set{Table: table, Name: name, IsMap: true, KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.NativeEndian, DataType: nftables.TypeVerdict}
}

// rebuild replaces the table with rs in one batch.
func (a *Applier) rebuild(rs *Ruleset) error {
	c := a.conn
	c.AddTable(table) // the delete below must not fail on a missing table
	c.DelTable(table)
	c.AddTable(table)

	sets := map[string]*nftables.Set{}
	dl := dropLogSet(false)
	if err := addSet(c, dl, nil); err != nil {
		return err
	}
	sets[DropLogSet] = dl
	if rs.IPv6 {
		dl6 := dropLogSet(true)
		if err := addSet(c, dl6, nil); err != nil {
			return err
		}
		sets[DropLogSet6] = dl6
	}
	for i := range rs.Sets {
		s := &rs.Sets[i]
		ns := peerSet(s)
		if err := addSet(c, ns, peerElements(s)); err != nil {
			return err
		}
		sets[s.Name] = ns
	}
	tracked, pods := trackedSet(false), podCIDRSet(false)
	if err := addSet(c, tracked, addrElements(ofFamily(rs.Tracked, false, addrOf))); err != nil {
		return err
	}
	if err := addSet(c, pods, prefixElements(ofFamily(rs.PodCIDRs, false, prefixAddrOf))); err != nil {
		return err
	}
	// The untrack chains before the map whose verdicts goto them.
	for _, in := range []bool{false, true} {
		name := UntrackChain
		if in {
			name = UntrackInChain
		}
		ch := c.AddChain(&nftables.Chain{Table: table, Name: name})
		for _, r := range untrackExprs(tracked, pods, rs.PodCIDRs, false, in) {
			c.AddRule(&nftables.Rule{Table: table, Chain: ch, Exprs: r.exprs, UserData: comment(r.comment)})
		}
	}
	addrs := addrsMap(false)
	if err := addSet(c, addrs, ifaceAddrElements(ofFamily(rs.Addrs, false, ifaceAddrOf), false)); err != nil {
		return err
	}
	if rs.IPv6 {
		if err := addBase6(c, rs, sets[DropLogSet6]); err != nil {
			return err
		}
	}
	chains := map[string]*nftables.Chain{}
	for _, ch := range rs.Chains {
		chains[ch.Name] = c.AddChain(&nftables.Chain{Table: table, Name: ch.Name})
	}
	egress, ingress := dispatchMap(EgressDispatch), dispatchMap(IngressDispatch)
	if err := addSet(c, egress, dispatchElements(rs.EgressDispatch)); err != nil {
		return err
	}
	if err := addSet(c, ingress, dispatchElements(rs.IngressDispatch)); err != nil {
		return err
	}
	for _, ch := range rs.Chains {
		for _, r := range ch.Rules {
			c.AddRule(&nftables.Rule{Table: table, Chain: chains[ch.Name], Exprs: ruleExprs(&r, sets), UserData: comment(r.Comment)})
		}
	}

	accept := nftables.ChainPolicyAccept
	pre := c.AddChain(&nftables.Chain{
		Table: table, Name: "prerouting", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw, Policy: &accept,
	})
	if rs.IPv6 {
		// IPv6 has chains of its own, so IPv4 packets walk no IPv6 rule but this one.
		c.AddRule(&nftables.Rule{Table: table, Chain: pre, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.NFPROTO_IPV6}},
			&expr.Verdict{Kind: expr.VerdictGoto, Chain: Prerouting6Chain},
		}})
	}
	fromPod, spoof, toPod := preroutingExprs(addrs, pods, rs.PodCIDRs)
	c.AddRule(&nftables.Rule{Table: table, Chain: pre, Exprs: fromPod})
	if !rs.NoDropLog {
		c.AddRule(&nftables.Rule{Table: table, Chain: pre, Exprs: append(spoof[:4:4], dropLogExprs(SpoofLogPrefix, true, false, dl.ID)...)})
	}
	c.AddRule(&nftables.Rule{Table: table, Chain: pre, Exprs: spoof, UserData: comment(spoofComment)})
	c.AddRule(&nftables.Rule{Table: table, Chain: pre, Exprs: toPod})
	// The forward chain's ct rules switch connection tracking on in the
	// host's namespace; the untrack chain keeps it for traffic a policy
	// applies to (docs/benchmarks.md prices both).
	fwd := c.AddChain(&nftables.Chain{
		Table: table, Name: "forward", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept,
	})
	for _, r := range forwardExprs(egress, ingress) {
		c.AddRule(&nftables.Rule{Table: table, Chain: fwd, Exprs: r.exprs, UserData: comment(r.comment)})
	}
	if rs.VXLAN != nil {
		if err := addVXLANFilter(c, rs.VXLAN); err != nil {
			return err
		}
		c.AddRule(&nftables.Rule{Table: table, Chain: pre, Exprs: udpPortNotrack(rs.VXLAN.Port)})
		out := c.AddChain(&nftables.Chain{
			Table: table, Name: "output", Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityRaw, Policy: &accept,
		})
		c.AddRule(&nftables.Rule{Table: table, Chain: out, Exprs: udpPortNotrack(rs.VXLAN.Port)})
	}
	if a.beforeFlush != nil {
		a.beforeFlush(c, table)
	}
	return c.Flush()
}

// addVXLANFilter adds the input chain that drops VXLAN from anything but a
// cluster node: udp dport PORT ip saddr != @vxlan_peers counter drop.
// An IPv6 underlay gets the same filter with set vxlan_peers6 (always
// there: a node's underlay family can change by element updates).
func addVXLANFilter(c *nftables.Conn, v *VXLANFilter) error {
	accept := nftables.ChainPolicyAccept
	in := c.AddChain(&nftables.Chain{
		Table: table, Name: "input", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept,
	})
	for _, v6 := range []bool{false, true} {
		set := vxlanPeersSet(v6)
		if err := addSet(c, set, addrElements(ofFamily(v.Peers, v6, addrOf))); err != nil {
			return err
		}
		exprs := append(familyOnly(v6),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_UDP}},
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.BigEndian.PutUint16(v.Port)},
			loadFamilyAddr(v6, true, reg1),
			&expr.Lookup{SourceRegister: reg1, SetName: set.Name, SetID: set.ID, Invert: true},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictDrop},
		)
		c.AddRule(&nftables.Rule{Table: table, Chain: in, Exprs: exprs, UserData: comment(vxlanComment)})
	}
	return nil
}

func vxlanPeersSet(v6 bool) *nftables.Set {
	if v6 {
		return &nftables.Set{Table: table, Name: VXLANPeers6, KeyType: nftables.TypeIP6Addr}
	}
	return &nftables.Set{Table: table, Name: VXLANPeers, KeyType: nftables.TypeIPAddr}
}

// sameFilterShape reports whether two VXLAN filters differ at most in their
// peers, which element updates can change.
func sameFilterShape(a, b *VXLANFilter) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Port == b.Port
}

func vxlanEqual(a, b *VXLANFilter) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Port == b.Port && slices.Equal(a.Peers, b.Peers)
}

// patch applies d in one batch: new sets, element changes of kept sets,
// new chains, dispatch and anti-spoofing changes, then the deletion of
// chains and sets nothing uses any more.
func (a *Applier) patch(d *TableDiff) error {
	c := a.conn
	var errs []error
	add := func(s *nftables.Set, elems []nftables.SetElement) {
		for chunk := range slices.Chunk(elems, elementChunk) {
			errs = append(errs, c.SetAddElements(s, chunk))
		}
	}
	del := func(s *nftables.Set, elems []nftables.SetElement) {
		for chunk := range slices.Chunk(elems, elementChunk) {
			errs = append(errs, c.SetDeleteElements(s, chunk))
		}
	}
	// Peer set names say their family: only IPv6 twins hold IPv6.
	addrSet := func(name string, addrs []netip.Addr) *nftables.Set {
		return &nftables.Set{Table: table, Name: name, KeyType: addrType(len(addrs) > 0 && addrs[0].Is6())}
	}
	addrPortSet := func(name string, aps []AddrPort) *nftables.Set {
		kt := addrPortType
		if len(aps) > 0 && aps[0].Addr.Is6() {
			kt = addrPortType6
		}
		return &nftables.Set{Table: table, Name: name, KeyType: kt, Concatenation: true}
	}

	sets := map[string]*nftables.Set{}
	for i := range d.AddSets {
		s := &d.AddSets[i]
		ns := peerSet(s)
		errs = append(errs, addSet(c, ns, peerElements(s)))
		sets[s.Name] = ns
	}
	for name, addrs := range d.DelAddrs {
		del(addrSet(name, addrs), addrElements(addrs))
	}
	for name, aps := range d.DelAddrPorts {
		del(addrPortSet(name, aps), addrPortElements(aps))
	}
	for name, addrs := range d.AddAddrs {
		add(addrSet(name, addrs), addrElements(addrs))
	}
	for name, aps := range d.AddAddrPorts {
		add(addrPortSet(name, aps), addrPortElements(aps))
	}

	chains := map[string]*nftables.Chain{}
	for _, ch := range d.AddChains {
		chains[ch.Name] = c.AddChain(&nftables.Chain{Table: table, Name: ch.Name})
	}
	for _, ch := range d.AddChains {
		for _, r := range ch.Rules {
			c.AddRule(&nftables.Rule{Table: table, Chain: chains[ch.Name], Exprs: ruleExprs(&r, sets), UserData: comment(r.Comment)})
		}
	}

	egress, ingress := dispatchMap(EgressDispatch), dispatchMap(IngressDispatch)
	for _, v6 := range []bool{false, true} {
		del(vxlanPeersSet(v6), addrElements(ofFamily(d.DelVXLANPeers, v6, addrOf)))
		add(vxlanPeersSet(v6), addrElements(ofFamily(d.AddVXLANPeers, v6, addrOf)))
	}
	del(egress, dispatchKeys(d.DelEgress))
	del(ingress, dispatchKeys(d.DelIngress))
	for _, v6 := range []bool{false, true} {
		// A diff between rulesets of one IPv6 state (Apply rebuilds on a
		// change): with IPv6 off there is no IPv6 element to move. An
		// endpoint becoming selected is its entries deleted and added
		// again with the other verdict.
		del(addrsMap(v6), ifaceAddrKeys(ofFamily(d.DelIfaceAddrs, v6, ifaceAddrOf)))
		add(addrsMap(v6), ifaceAddrElements(ofFamily(d.AddIfaceAddrs, v6, ifaceAddrOf), v6))
		if v6 {
			gone, added := naTargetChanges(d.DelIfaceAddrs, d.AddIfaceAddrs)
			del(naTargets6(), ifaceAddrKeys(gone))
			add(naTargets6(), ifaceAddrKeys(added))
		}
		// In the batch with the dispatch entries: an endpoint is tracked
		// from the moment its policy applies.
		del(trackedSet(v6), addrElements(ofFamily(d.DelTracked, v6, addrOf)))
		add(trackedSet(v6), addrElements(ofFamily(d.AddTracked, v6, addrOf)))
	}
	add(egress, dispatchElements(d.AddEgress))
	add(ingress, dispatchElements(d.AddIngress))

	for _, name := range d.DelChains {
		c.DelChain(&nftables.Chain{Table: table, Name: name})
	}
	for _, name := range d.DelSets {
		c.DelSet(&nftables.Set{Table: table, Name: name})
	}
	if err := errors.Join(errs...); err != nil {
		// Not flushed: a partial batch is never sent. What was queued goes
		// out in front of the next batch, the rebuild Apply does after a
		// failure, which replaces the table anyway.
		return err
	}
	if a.beforeFlush != nil {
		a.beforeFlush(c, table)
	}
	return c.Flush()
}

// elementChunk is how many elements go into one netlink message: the
// element list is one attribute, whose length field has 16 bits. (Longer
// lists overflow it and the kernel silently keeps the first 64 KiB.) No
// element takes more than ~100 bytes.
const elementChunk = 500

// addSet declares s and adds elems in chunks.
func addSet(c *nftables.Conn, s *nftables.Set, elems []nftables.SetElement) error {
	if err := c.AddSet(s, nil); err != nil {
		return fmt.Errorf("add set %s: %w", s.Name, err)
	}
	for chunk := range slices.Chunk(elems, elementChunk) {
		if err := c.SetAddElements(s, chunk); err != nil {
			return fmt.Errorf("add elements to set %s: %w", s.Name, err)
		}
	}
	return nil
}

func peerElements(s *NFTSet) []nftables.SetElement {
	switch s.Kind {
	case SetAddrPorts:
		return addrPortElements(s.AddrPorts)
	case SetCIDRs:
		return prefixElements(s.Prefixes)
	}
	return addrElements(addrsOf(s.Prefixes))
}

// prefixElements returns the interval elements of disjoint prefixes of one
// family.
func prefixElements(ps []netip.Prefix) []nftables.SetElement {
	var out []nftables.SetElement
	for _, p := range ps {
		out = append(out, nftables.SetElement{Key: p.Addr().AsSlice()})
		if end, ok := prefixEnd(p); ok {
			out = append(out, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
		}
	}
	return out
}

// prefixEnd returns the first address after p, or false when p reaches the
// end of the address space (the interval then stays open).
func prefixEnd(p netip.Prefix) (netip.Addr, bool) {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	last, _ := netip.AddrFromSlice(b)
	end := last.Next()
	return end, end.IsValid()
}

func addrElements(addrs []netip.Addr) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, nftables.SetElement{Key: a.AsSlice()})
	}
	return out
}

func addrPortElements(aps []AddrPort) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, len(aps))
	for _, ap := range aps {
		// Each part of a concatenation takes whole 4-byte registers.
		a := ap.Addr.AsSlice()
		k := make([]byte, len(a)+8)
		copy(k, a)
		k[len(a)] = byte(ap.Proto)
		binary.BigEndian.PutUint16(k[len(a)+4:], ap.Port)
		out = append(out, nftables.SetElement{Key: k})
	}
	return out
}

func ifname(name string) []byte {
	b := make([]byte, 16)
	copy(b, name)
	return b
}

// ifaceAddrElements returns the anti-spoofing map entries of ias (all of
// family v6): goto the untrack chain, or accept for a selected endpoint.
func ifaceAddrElements(ias []IfaceAddr, v6 bool) []nftables.SetElement {
	untrack := &expr.Verdict{Kind: expr.VerdictGoto, Chain: UntrackChain}
	if v6 {
		untrack = &expr.Verdict{Kind: expr.VerdictGoto, Chain: UntrackChain6}
	}
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	out := ifaceAddrKeys(ias)
	for i, ia := range ias {
		out[i].VerdictData = untrack
		if ia.Tracked {
			out[i].VerdictData = accept
		}
	}
	return out
}

// ifaceAddrKeys returns the keys of ias: elements of the NA target set, or
// map entries to delete.
func ifaceAddrKeys(ias []IfaceAddr) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, len(ias))
	for _, ia := range ias {
		out = append(out, nftables.SetElement{Key: append(ifname(ia.Iface), ia.Addr.AsSlice()...)})
	}
	return out
}

// naTargetChanges returns the IPv6 anti-spoofing entries that go and come
// as interface . address, leaving out those that only change their verdict
// (the NA target set has none).
func naTargetChanges(del, add []IfaceAddr) (gone, added []IfaceAddr) {
	type key struct {
		iface string
		addr  netip.Addr
	}
	keys := func(l []IfaceAddr) map[key]bool {
		m := map[key]bool{}
		for _, ia := range l {
			if ia.Addr.Is6() {
				m[key{ia.Iface, ia.Addr}] = true
			}
		}
		return m
	}
	d, a := keys(del), keys(add)
	for _, ia := range del {
		if ia.Addr.Is6() && !a[key{ia.Iface, ia.Addr}] {
			gone = append(gone, ia)
		}
	}
	for _, ia := range add {
		if ia.Addr.Is6() && !d[key{ia.Iface, ia.Addr}] {
			added = append(added, ia)
		}
	}
	return gone, added
}

func dispatchElements(m map[string]string) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, len(m))
	for iface, chain := range m {
		out = append(out, nftables.SetElement{Key: ifname(iface), VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: chain}})
	}
	return out
}

func dispatchKeys(m map[string]string) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, len(m))
	for iface := range m {
		out = append(out, nftables.SetElement{Key: ifname(iface)})
	}
	return out
}

func comment(s string) []byte {
	if s == "" {
		return nil
	}
	return userdata.AppendString(nil, userdata.TypeComment, s)
}

// Registers: reg 1 is the first 16-byte register; 9, 10 and 12 are 4-byte
// registers inside it and the next one, for concatenations (as nft uses them).
const (
	reg1   = 1
	reg32b = 9
	reg32c = 10
	reg32e = 12
)

func ipv4Only() []expr.Any { return familyOnly(false) }

// familyOnly: meta nfproto ipv6 (v6) or ipv4.
func familyOnly(v6 bool) []expr.Any {
	nfproto := byte(unix.NFPROTO_IPV4)
	if v6 {
		nfproto = unix.NFPROTO_IPV6
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{nfproto}},
	}
}

func loadAddr(saddr bool, reg uint32) *expr.Payload { return loadFamilyAddr(false, saddr, reg) }

// loadFamilyAddr loads the source or destination address of an IPv6 (v6)
// or IPv4 header.
func loadFamilyAddr(v6, saddr bool, reg uint32) *expr.Payload {
	off, n := uint32(16), uint32(4)
	if saddr {
		off = 12
	}
	if v6 {
		off, n = 24, 16
		if saddr {
			off = 8
		}
	}
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}
}

func loadDport(reg uint32) *expr.Payload {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

// setID returns the batch ID of a set declared in the same batch, or 0 for
// one that exists already (the kernel then finds it by name).
func setID(sets map[string]*nftables.Set, name string) uint32 {
	if s, ok := sets[name]; ok {
		return s.ID
	}
	return 0
}

// ruleExprs translates r; sets holds the sets declared in the same batch.
func ruleExprs(r *NFTRule, sets map[string]*nftables.Set) []expr.Any {
	var out []expr.Any
	if r.Set != "" || r.PortSet != "" {
		out = append(out, familyOnly(r.V6)...)
	}
	if r.Set != "" {
		out = append(out, loadFamilyAddr(r.V6, r.Saddr, reg1), &expr.Lookup{SourceRegister: reg1, SetName: r.Set, SetID: setID(sets, r.Set)})
	}
	if r.PortSet != "" {
		// The address fills reg 1 (IPv4: its first 4 bytes, reg32 8), the
		// protocol and port the 4-byte registers after it.
		proto, port := uint32(reg32b), uint32(reg32c)
		if r.V6 {
			proto, port = reg32e, reg32e+1
		}
		out = append(out,
			loadFamilyAddr(r.V6, false, reg1),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: proto},
			loadDport(port),
			&expr.Lookup{SourceRegister: reg1, SetName: r.PortSet, SetID: setID(sets, r.PortSet)},
		)
	}
	if r.Proto != 0 {
		out = append(out,
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{byte(r.Proto)}},
		)
	}
	switch {
	case r.From == 0:
	case r.From == r.To:
		out = append(out, loadDport(reg1), &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: be16(r.From)})
	default:
		out = append(out, loadDport(reg1), &expr.Range{Op: expr.CmpOpEq, Register: reg1, FromData: be16(r.From), ToData: be16(r.To)})
	}
	switch r.Verdict {
	case VerdictReturn:
		out = append(out, &expr.Verdict{Kind: expr.VerdictReturn})
	case VerdictGoto:
		out = append(out, &expr.Verdict{Kind: expr.VerdictGoto, Chain: r.Target})
	case VerdictLog:
		name := DropLogSet
		if r.V6 {
			name = DropLogSet6
		}
		out = append(out, dropLogExprs(r.Comment, !r.Saddr, r.V6, setID(sets, name))...)
	default:
		out = append(out, &expr.Verdict{Kind: expr.VerdictDrop})
	}
	return out
}

// dropLogExprs: meta nfproto ipv4 update @drop_log { ip saddr|daddr limit
// rate dropLogRate/second burst dropLogBurst packets } log prefix PREFIX
// group DropLogGroup, with no verdict: one limit per policed endpoint
// (bySource: the source), created on its first drop. With v6 the same for
// IPv6 packets, in drop_log6.
func dropLogExprs(prefix string, bySource, v6 bool, setID uint32) []expr.Any {
	name := DropLogSet
	if v6 {
		name = DropLogSet6
	}
	return append(familyOnly(v6),
		loadFamilyAddr(v6, bySource, reg1),
		&expr.Dynset{SrcRegKey: reg1, SetName: name, SetID: setID, Operation: uint32(unix.NFT_DYNSET_OP_UPDATE),
			Exprs: []expr.Any{&expr.Limit{Type: expr.LimitTypePkts, Rate: dropLogRate, Unit: expr.LimitTimeSecond, Burst: dropLogBurst}}},
		&expr.Log{Key: 1<<unix.NFTA_LOG_PREFIX | 1<<unix.NFTA_LOG_GROUP, Group: DropLogGroup, Data: []byte(prefix)},
	)
}

// dropLogSet is the bounded dynamic set of per-endpoint log limits, of
// IPv6 addresses with v6.
func dropLogSet(v6 bool) *nftables.Set {
	name, key := DropLogSet, nftables.TypeIPAddr
	if v6 {
		name, key = DropLogSet6, nftables.TypeIP6Addr
	}
	return &nftables.Set{Table: table, Name: name, KeyType: key, Dynamic: true,
		HasTimeout: true, Timeout: dropLogSetTimeout, Size: dropLogSetSize}
}

// preroutingExprs: a packet from a Skein host interface is looked up by
// interface and source in the anti-spoofing map, which sends it on to the
// untrack chain or accepts it (see EndpointAddrs); the rest of what arrives
// on Skein host interfaces is dropped, and other packets to pod addresses go
// to untrack_in. A Skein host interface is "sk" plus 11 characters; Skein's
// other devices (skein.vxlan) start with "skein." and are excluded. Both
// are prefix compares (a cmp shorter than the name, no mask), which nft
// lists as `iifname "sk*" iifname != "skein.*"`; they also spare packets
// from the overlay the map lookup.
func preroutingExprs(addrs, pods *nftables.Set, pools []netip.Prefix) (fromPod, spoof, toPod []expr.Any) {
	fromPod = append(fromPodExprs(), ipv4Only()...)
	fromPod = append(fromPod,
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
		loadAddr(true, reg32e),
		&expr.Lookup{SourceRegister: reg1, SetName: addrs.Name, SetID: addrs.ID, IsDestRegSet: true, DestRegister: 0},
	)
	spoof = append(fromPodExprs(),
		&expr.Counter{}, // spoofing attempts show in `nft list chain inet skein prerouting`
		&expr.Verdict{Kind: expr.VerdictDrop},
	)
	toPod = append(poolExprs(pods, pools, false, false, false), &expr.Verdict{Kind: expr.VerdictGoto, Chain: UntrackInChain})
	return fromPod, spoof, toPod
}

// fromPodExprs match a packet from a container's host veth: iifname
// "sk*" iifname != "skein.*" (fromPodMatch).
func fromPodExprs() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte(HostIfacePrefix)},
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: []byte(DevicePrefix)},
	}
}

// poolExprs test a packet's source (saddr) or destination against the
// family's pod pools (poolMatch): a masked compare for a single pool, a
// lookup in the pool set otherwise.
func poolExprs(pods *nftables.Set, pools []netip.Prefix, v6, saddr, not bool) []expr.Any {
	// The nfproto test is implied (every rule that gets here checks it)
	// but nft lists raw payloads without it.
	out := append(familyOnly(v6), loadFamilyAddr(v6, saddr, reg1))
	p, ok := singlePool(pools, v6)
	if !ok {
		return append(out, &expr.Lookup{SourceRegister: reg1, SetName: pods.Name, SetID: pods.ID, Invert: not})
	}
	op := expr.CmpOpEq
	if not {
		op = expr.CmpOpNeq
	}
	n := p.Addr().BitLen() / 8
	if p.Bits() < p.Addr().BitLen() {
		mask := net.CIDRMask(p.Bits(), p.Addr().BitLen())
		out = append(out, &expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: uint32(n), Mask: mask, Xor: make([]byte, n)})
	}
	return append(out, &expr.Cmp{Op: op, Register: reg1, Data: p.Masked().Addr().AsSlice()})
}

// untrackExprs are the rules of an untrack chain (untrackRules): in checks
// the source is a pod address, the other the destination.
func untrackExprs(tracked, pods *nftables.Set, pools []netip.Prefix, v6, in bool) []baseRule {
	ret := &expr.Verdict{Kind: expr.VerdictReturn}
	return []baseRule{
		{exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: []byte{unix.IPPROTO_TCP}},
			ret,
		}},
		{exprs: append(poolExprs(pods, pools, v6, in, true), ret)},
		{exprs: append(familyOnly(v6), loadFamilyAddr(v6, false, reg1), &expr.Lookup{SourceRegister: reg1, SetName: tracked.Name, SetID: tracked.ID}, ret)},
		// To this host (its VTEP address is a pod address): its own
		// firewall may judge connections by their state.
		{exprs: []expr.Any{
			&expr.Fib{Register: reg1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binary.NativeEndian.AppendUint32(nil, unix.RTN_LOCAL)},
			ret,
		}},
		{exprs: []expr.Any{&expr.Notrack{}}, comment: untrackComment},
	}
}

func udpPortNotrack(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_UDP}},
		loadDport(reg1),
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: be16(port)},
		&expr.Notrack{},
	}
}

// baseRule is a rule of a fixed chain.
type baseRule struct {
	exprs   []expr.Any
	comment string
}

// forwardExprs: established, related and untracked first, TCP picked up
// mid-stream next, invalid dropped, then dispatch by interface.
func forwardExprs(egress, ingress *nftables.Set) []baseRule {
	state := func(bits uint32, kind expr.VerdictKind) []expr.Any {
		return []expr.Any{
			&expr.Ct{Register: reg1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
				Mask: binary.NativeEndian.AppendUint32(nil, bits), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 4)},
			&expr.Verdict{Kind: kind},
		}
	}
	dispatch := func(key expr.MetaKey, m *nftables.Set) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: key, Register: reg1},
			&expr.Lookup{SourceRegister: reg1, SetName: m.Name, SetID: m.ID, IsDestRegSet: true, DestRegister: 0},
		}
	}
	noSYN := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 1, Mask: []byte{tcpSYN}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{0}},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}
	return []baseRule{
		{exprs: state(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED|expr.CtStateBitUNTRACKED, expr.VerdictAccept)},
		{exprs: noSYN, comment: pickupComment},
		{exprs: state(expr.CtStateBitINVALID, expr.VerdictDrop)},
		{exprs: dispatch(expr.MetaKeyIIFNAME, egress)},
		{exprs: dispatch(expr.MetaKeyOIFNAME, ingress)},
	}
}

// tcpSYN is the SYN bit of the TCP flags byte.
const tcpSYN = 0x02
