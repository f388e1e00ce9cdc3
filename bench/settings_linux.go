package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/skeinnet/skein/internal/nlretry"
	"github.com/skeinnet/skein/lab"
)

// Candidate settings for the Skein data plane. Each is switched on inside
// the lab's namespaces just before its row is measured and restored right
// after, so that every round measures Skein as is and each setting.

// nsDev is a device in a namespace.
type nsDev struct{ ns, dev string }

// ethtoolSetting switches ethtool features on (and optionally threaded
// NAPI) on a set of devices, and restores what it found.
type ethtoolSetting struct {
	devs     []nsDev
	features []string // ethtool -K names, set to "on"
	threaded bool     // also write 1 to /sys/class/net/<dev>/threaded
	saved    map[nsDev]map[string]string
	savedThr map[nsDev]string
}

// ethtoolLong maps -K names to the names `ethtool -k` prints.
var ethtoolLong = map[string]string{"gro": "generic-receive-offload"}

// readFeatures returns the on/off state of features on a device.
func readFeatures(ctx context.Context, d nsDev, names []string) (map[string]string, error) {
	out, err := outputIn(ctx, d.ns, "ethtool", "-k", d.dev)
	if err != nil {
		return nil, err
	}
	got := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok {
			continue
		}
		got[k] = strings.Fields(v + " x")[0]
	}
	st := map[string]string{}
	for _, n := range names {
		long := n
		if l, ok := ethtoolLong[n]; ok {
			long = l
		}
		v, ok := got[long]
		if !ok || (v != "on" && v != "off") {
			return nil, fmt.Errorf("ethtool -k %s in %s: no feature %s", d.dev, d.ns, long)
		}
		st[n] = v
	}
	return st, nil
}

// setFeatures sets features (in order) to the given values.
func setFeatures(ctx context.Context, d nsDev, vals map[string]string, order []string) error {
	args := []string{"-K", d.dev}
	for _, n := range order {
		args = append(args, n, vals[n])
	}
	_, err := outputIn(ctx, d.ns, "ethtool", args...)
	return err
}

// sysfsThreaded reads (value "") or writes /sys/class/net/<dev>/threaded of
// a namespace and returns what it then holds. It goes through `ip netns
// exec`, which mounts the namespace's own sysfs (a process merely switched
// into the namespace would see the root's), and the script checks that it
// runs in the right network namespace before touching anything.
func sysfsThreaded(ctx context.Context, d nsDev, value string) (string, error) {
	ino, err := nsInode(d.ns)
	if err != nil {
		return "", err
	}
	f := "/sys/class/net/" + d.dev + "/threaded"
	script := fmt.Sprintf(`[ "$(readlink /proc/self/ns/net)" = "net:[%d]" ] || { echo wrong namespace >&2; exit 1; }; `, ino)
	if value != "" {
		script += fmt.Sprintf("echo %s > %s; ", value, f)
	}
	script += "cat " + f
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", d.ns, "sh", "-c", script).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("threaded NAPI on %s in %s: %w: %s", d.dev, d.ns, err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

func (s *ethtoolSetting) apply(ctx context.Context) error {
	s.saved, s.savedThr = map[nsDev]map[string]string{}, map[nsDev]string{}
	on := map[string]string{}
	for _, f := range s.features {
		on[f] = "on"
	}
	for _, d := range s.devs {
		st, err := readFeatures(ctx, d, s.features)
		if err != nil {
			return err
		}
		s.saved[d] = st
		if err := setFeatures(ctx, d, on, s.features); err != nil {
			return err
		}
		if s.threaded {
			old, err := sysfsThreaded(ctx, d, "")
			if err != nil {
				return err
			}
			s.savedThr[d] = old
			if _, err := sysfsThreaded(ctx, d, "1"); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *ethtoolSetting) revert(ctx context.Context) error {
	var errs []error
	for _, d := range s.devs {
		if old, ok := s.savedThr[d]; ok {
			if _, err := sysfsThreaded(ctx, d, old); err != nil {
				errs = append(errs, err)
			}
		}
		if st, ok := s.saved[d]; ok {
			if err := setFeatures(ctx, d, st, s.features); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// sysctlSetting sets net sysctls in one namespace and restores them.
type sysctlSetting struct {
	ns    string
	keys  []string
	value string
	saved map[string]string
}

func (s *sysctlSetting) apply(_ context.Context) error {
	s.saved = map[string]string{}
	for _, k := range s.keys {
		old, err := readSysctl(s.ns, k)
		if err != nil {
			return err
		}
		s.saved[k] = old
		if err := writeSysctlChecked(s.ns, k, s.value); err != nil {
			return err
		}
	}
	return nil
}

func (s *sysctlSetting) revert(_ context.Context) error {
	var errs []error
	for k, v := range s.saved {
		if err := writeSysctlChecked(s.ns, k, v); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// writeSysctlChecked writes a sysctl inside ns and verifies that the root
// namespace's value did not move (that is, that the key is per namespace);
// if it did, it puts the root's value back and fails.
func writeSysctlChecked(ns, key, value string) error {
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	before, err := os.ReadFile(path) // this thread is in the root namespace
	if err != nil {
		return fmt.Errorf("sysctl %s: %w", key, err)
	}
	if err := writeSysctl(ns, key, value); err != nil {
		return err
	}
	after, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("sysctl %s: %w", key, err)
	}
	if string(after) != string(before) {
		// Not reached on kernels with per-namespace bridge sysctls (5.x and later).
		_ = os.WriteFile(path, before, 0o644) // best effort restore of the root's value
		return fmt.Errorf("sysctl %s is not per namespace here; restored the root's value", key)
	}
	return nil
}

// readSysctl reads a net sysctl inside ns.
func readSysctl(ns, key string) (string, error) {
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	var v string
	err := inNS(ns, func() error {
		b, err := os.ReadFile(path)
		v = strings.TrimSpace(string(b))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("read sysctl %s in %s: %w", key, ns, err)
	}
	return v, nil
}

// podVeth returns the host side of the container's veth on a lab host: the
// veth that is not the underlay interface.
func podVeth(host string) (string, error) {
	h, err := handleIn(host)
	if err != nil {
		return "", err
	}
	defer h.Close()
	links, err := nlretry.Dump(h.LinkList)
	if err != nil {
		return "", fmt.Errorf("list links in %s: %w", host, err)
	}
	for _, l := range links {
		if l.Type() == "veth" && l.Attrs().Name != lab.HostIface {
			return l.Attrs().Name, nil
		}
	}
	return "", fmt.Errorf("no pod veth in %s", host)
}

// skeinOpts describes the Skein lab for its candidate-setting rows.
type skeinOpts struct {
	underlayNS string
	hosts      []string // the client's and the server's host
	ctrs       []string // the client and the server container
	podCIDR    string
	vxlanPort  int
	extra      bool // also the rows that showed no gain in earlier runs
}

// skeinSettings returns the candidate-setting rows for the Skein lab.
func skeinSettings(o skeinOpts) ([]dpPath, error) {
	var eth0s, pods []nsDev
	for i, h := range o.hosts {
		eth0s = append(eth0s, nsDev{h, lab.HostIface})
		pv, err := podVeth(h)
		if err != nil {
			return nil, err
		}
		pods = append(pods, nsDev{h, pv}, nsDev{o.ctrs[i], lab.ContainerIface})
	}
	type applier interface {
		apply(context.Context) error
		revert(context.Context) error
	}
	mk := func(key, name string, s applier) dpPath {
		return dpPath{key: key, name: name, base: pathSkein, apply: s.apply, revert: s.revert}
	}
	rows := []dpPath{
		mk("skein+gro", "Skein + GRO on the underlay veth (eth0)",
			&ethtoolSetting{devs: eth0s, features: []string{"gro"}}),
		mk("skein+udpgro", "Skein + GRO and rx-udp-gro-forwarding on eth0",
			&ethtoolSetting{devs: eth0s, features: []string{"gro", "rx-udp-gro-forwarding"}}),
	}
	if o.extra {
		rows = append(rows,
			mk("skein+podgro", "Skein + GRO on both ends of the pod veths",
				&ethtoolSetting{devs: pods, features: []string{"gro"}}),
			mk("skein+napi", "Skein + GRO and threaded NAPI on eth0 and the pod veths",
				&ethtoolSetting{devs: append(append([]nsDev(nil), eth0s...), pods...), features: []string{"gro"}, threaded: true}))
	}
	if brNetfilterOn(o.underlayNS) {
		rows = append(rows, mk("skein+nobrnf", "Skein, underlay bridge without br_netfilter (lab underlay, not the agent)", noBrNetfilter(o.underlayNS)))
	}
	return rows, nil
}

// brNetfilterKeys make a bridge hand bridged frames to the IP, IPv6 and ARP
// netfilter hooks when br_netfilter is loaded (per namespace, default on).
var brNetfilterKeys = []string{"net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables", "net.bridge.bridge-nf-call-arptables"}

// brNetfilterOn reports whether bridges in ns pass frames to the IP hooks;
// only then is a row without it worth measuring.
func brNetfilterOn(ns string) bool {
	v, err := readSysctl(ns, brNetfilterKeys[0])
	return err == nil && v == "1"
}

// noBrNetfilter turns br_netfilter's hooks off for the bridges in ns, as a
// physical switch would be.
func noBrNetfilter(ns string) *sysctlSetting {
	return &sysctlSetting{ns: ns, keys: brNetfilterKeys, value: "0"}
}

// nftTable is the table the nftables rows load (never Skein's own).
const nftTable = "skbench"

// headMode says which layout of the head of Skein's table a hand-built row
// copies.
type headMode int

const (
	// headTrackAll is the layout before issue 11: conntrack on for every
	// forwarded packet.
	headTrackAll headMode = iota
	// headUntracked is the first untrack layout (issue 11's first pass): for
	// a pod no policy selects, its TCP with other pods is marked notrack
	// before conntrack, after an anti-spoofing lookup, two interval lookups
	// (pod pools) and two hash lookups (tracked addresses).
	headUntracked
	// headHooksOnly has the table's three base chains (raw prerouting and
	// output, filter forward) and no rule: what registering the hooks costs.
	headHooksOnly
	// headNotrackOnly marks every packet notrack and accepts untracked ones
	// in forward, with no lookup: the least any notrack layout costs.
	headNotrackOnly
	// headVmap is today's layout (issue 11's second pass): one
	// verdict-map lookup on (veth, source) does anti-spoofing and tells
	// selected from unselected pods at once, the pools are inline prefix
	// compares instead of interval sets, and only the destination is looked
	// up in tracked_addrs.
	headVmap
	// headVmapSelected is headVmap with both pods selected by an allow-all
	// policy (conntrack).
	headVmapSelected
	// headVmapVXFilter is headVmap plus the VXLAN source filter on the
	// input hook as Skein ships it (an IPv4 and an IPv6 rule), which every
	// VXLAN packet to the host walks: the whole of Skein's table.
	headVmapVXFilter
	// headVmapNoFib is headVmap without the untrack chains' `fib daddr
	// type local` rule: what that one FIB lookup per packet costs.
	headVmapNoFib
)

// vxlanFilter is the input chain and peer sets of Skein's VXLAN source
// filter, for a table's body (peers: the underlay addresses allowed).
func vxlanFilter(peers string) string {
	return fmt.Sprintf(`	set vxlan_peers {
		type ipv4_addr
		elements = { %s }
	}
	set vxlan_peers6 {
		type ipv6_addr
	}
	chain input {
		type filter hook input priority filter; policy accept;
		udp dport 4789 ip saddr != @vxlan_peers counter drop
		udp dport 4789 ip6 saddr != @vxlan_peers6 counter drop
	}
`, peers)
}

// handRuleset mirrors the head of Skein's own table (agent policy, inet
// skein) for hand-built host i, in the given layout. Compared with the plain
// hand-built row it prices what the policy table costs every forwarded
// packet.
func handRuleset(i int, mode headMode) string {
	return nftHeadRuleset(fmt.Sprintf("c%dh", i+1), handPodIP[i], "10.99.0.0/16", mode)
}

// nftHeadRuleset is handRuleset for a host whose container veth is hostVeth,
// whose container has address podIP, in pod pool pool.
func nftHeadRuleset(hostVeth, podIP, pool string, mode headMode) string {
	switch mode {
	case headHooksOnly, headNotrackOnly:
		pre, fwd := "", ""
		if mode == headNotrackOnly {
			pre, fwd = "\t\tnotrack\n", "\t\tct state untracked accept\n"
		}
		return fmt.Sprintf(`table inet %[1]s {
	chain prerouting {
		type filter hook prerouting priority raw; policy accept;
%[2]s	}
	chain output {
		type filter hook output priority raw; policy accept;
%[2]s	}
	chain forward {
		type filter hook forward priority filter; policy accept;
%[3]s	}
}
`, nftTable, pre, fwd)
	}
	switch mode {
	case headVmap, headVmapSelected, headVmapVXFilter, headVmapNoFib:
		return vmapHeadRuleset(hostVeth, podIP, pool, mode)
	}
	if mode == headTrackAll {
		return fmt.Sprintf(`table inet %s {
	set ep_addrs {
		type ifname . ipv4_addr
		elements = { "%s" . %s }
	}
	map egress_dispatch {
		type ifname : verdict
	}
	map ingress_dispatch {
		type ifname : verdict
	}
	chain prerouting {
		type filter hook prerouting priority raw; policy accept;
		iifname . ip saddr @ep_addrs accept
		iifname "c*" drop
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		ct state established,related accept
		ct state invalid drop
		iifname vmap @egress_dispatch
		oifname vmap @ingress_dispatch
	}
}
`, nftTable, hostVeth, podIP)
	}
	return fmt.Sprintf(`table inet %[1]s {
	set ep_addrs {
		type ifname . ipv4_addr
		elements = { "%[2]s" . %[3]s }
	}
	set tracked_addrs {
		type ipv4_addr
	}
	set pod_cidrs {
		type ipv4_addr
		flags interval
		elements = { %[4]s }
	}
	map egress_dispatch {
		type ifname : verdict
	}
	map ingress_dispatch {
		type ifname : verdict
	}
	chain untrack {
		meta l4proto != tcp return
		ip saddr != @pod_cidrs return
		ip daddr != @pod_cidrs return
		ip saddr @tracked_addrs return
		ip daddr @tracked_addrs return
		fib daddr type local return
		notrack
	}
	chain prerouting {
		type filter hook prerouting priority raw; policy accept;
		iifname . ip saddr @ep_addrs goto untrack
		iifname "c*" drop
		ip daddr @pod_cidrs goto untrack
		udp dport 4789 notrack
	}
%[5]s}
`, nftTable, hostVeth, podIP, pool, untrackHeadTail)
}

// untrackHeadTail is the output and forward chains every untrack layout
// shares: the overlay's own packets skip conntrack on the way out, and the
// forward chain accepts known, untracked and picked-up packets before the
// dispatch maps.
const untrackHeadTail = `	chain output {
		type filter hook output priority raw; policy accept;
		udp dport 4789 notrack
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		ct state established,related,untracked accept
		tcp flags ! syn accept
		ct state invalid drop
		iifname vmap @egress_dispatch
		oifname vmap @ingress_dispatch
	}
`

// vmapHeadRuleset is nftHeadRuleset for headVmap and headVmapSelected.
func vmapHeadRuleset(hostVeth, podIP, pool string, mode headMode) string {
	verdict, tracked, dispatch, vxf := "goto untrack_out", "", "", ""
	fib := "\t\tfib daddr type local return\n"
	switch mode {
	case headVmapSelected:
		verdict = "accept"
		tracked = "\t\telements = { " + podIP + " }\n"
		dispatch = fmt.Sprintf("\t\telements = { %q : jump in-all }\n", hostVeth)
	case headVmapVXFilter:
		vxf = vxlanFilter(strings.Join(handUnderlay[:], ", "))
	case headVmapNoFib:
		fib = ""
	}
	return fmt.Sprintf(`table inet %[1]s {
	map ep_verdict {
		type ifname . ipv4_addr : verdict
		elements = { "%[2]s" . %[3]s : %[4]s }
	}
	set tracked_addrs {
		type ipv4_addr
%[5]s	}
	chain in-all {
		return
	}
	map egress_dispatch {
		type ifname : verdict
	}
	map ingress_dispatch {
		type ifname : verdict
%[6]s	}
	chain untrack_out {
		meta l4proto != tcp return
		ip daddr != %[7]s return
		ip daddr @tracked_addrs return
%[8]s		notrack
	}
	chain untrack_in {
		meta l4proto != tcp return
		ip saddr != %[7]s return
		ip daddr @tracked_addrs return
%[8]s		notrack
	}
	chain prerouting {
		type filter hook prerouting priority raw; policy accept;
		iifname "c*" iifname . ip saddr vmap @ep_verdict
		iifname "c*" drop
		ip daddr %[7]s goto untrack_in
		udp dport 4789 notrack
	}
%[10]s%[9]s}
`, nftTable, hostVeth, podIP, verdict, tracked, dispatch, pool, fib, vxf, untrackHeadTail)
}

// nftSetting loads a ruleset into namespaces and deletes its table after.
type nftSetting struct {
	rulesets map[string]string // by namespace
}

func (s *nftSetting) apply(ctx context.Context) error {
	for ns, rs := range s.rulesets {
		cmd := exec.CommandContext(ctx, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(rs)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := runIn(ns, cmd); err != nil {
			return fmt.Errorf("nft -f in %s: %w: %s", ns, err, strings.TrimSpace(out.String()))
		}
	}
	return nil
}

func (s *nftSetting) revert(ctx context.Context) error {
	var errs []error
	for ns := range s.rulesets {
		if out, err := outputIn(ctx, ns, "nft", "list", "tables"); err != nil || !strings.Contains(out, "inet "+nftTable) {
			continue
		}
		if _, err := outputIn(ctx, ns, "nft", "delete", "table", "inet", nftTable); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// handNft returns the nftables row's setting for the hand-built hosts, in
// the given layout.
func handNft(mode headMode) *nftSetting {
	s := &nftSetting{rulesets: map[string]string{}}
	for i, h := range handHosts {
		s.rulesets[h] = handRuleset(i, mode)
	}
	return s
}

// nftTables lists the nftables tables in ns ("" when none or nft is missing).
func nftTables(ctx context.Context, ns string) string {
	out, err := outputIn(ctx, ns, "nft", "list", "tables")
	if err != nil {
		return ""
	}
	var ts []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if t := strings.TrimSpace(strings.TrimPrefix(l, "table ")); t != "" {
			ts = append(ts, t)
		}
	}
	return strings.Join(ts, ", ")
}
