package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/skeinnet/skein/api"
)

// Privileged tests: the real binary plumbs real veths between two network
// namespaces the test creates, a "host" and a "container" one, while a fake
// agent (fakeagent_test.go) answers on a unix socket. Nothing here touches
// the namespace the test runs in.

var nsSeq atomic.Int64

// testNS is a named network namespace (/run/netns/<name>, so that CNI_NETNS
// paths work) with a netlink handle bound to it.
type testNS struct {
	Name string
	Path string
	h    netns.NsHandle
	NL   *netlink.Handle
}

// newTestNS creates a named netns removed when the test ends, pass or fail.
func newTestNS(t *testing.T, role string) *testNS {
	t.Helper()
	name := fmt.Sprintf("skcni-%s-%d-%d", role, os.Getpid(), nsSeq.Add(1))
	var h netns.NsHandle
	err := onLockedThread(func() error {
		var err error
		h, err = netns.NewNamed(name) // switches this thread into it
		return err
	})
	if err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	n := &testNS{Name: name, Path: filepath.Join("/run/netns", name), h: h}
	t.Cleanup(n.remove)
	n.NL, err = netlink.NewHandleAt(h, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("netlink in %s: %v", name, err)
	}
	return n
}

// remove closes the handles and deletes the named netns; safe to call twice.
func (n *testNS) remove() {
	if n.NL != nil {
		n.NL.Close()
		n.NL = nil
	}
	if n.h.IsOpen() {
		_ = n.h.Close() // read-only fd
	}
	if _, err := os.Stat(n.Path); err == nil {
		if err := netns.DeleteNamed(n.Name); err != nil {
			fmt.Fprintf(os.Stderr, "delete netns %s: %v\n", n.Name, err)
		}
	}
}

// onLockedThread runs f on a locked OS thread and puts the thread back into
// the test's own netns afterwards. If that fails the thread stays locked and
// dies with its goroutine instead of leaking a namespace to other goroutines.
func onLockedThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("get current netns: %w", err)
			return // thread stays locked: discarded
		}
		defer func() { _ = orig.Close() }() // read-only fd
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("restore netns: %w", err))
			return // thread stays locked: discarded
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// inNS runs f with the calling thread in n.
func (n *testNS) inNS(f func() error) error {
	return onLockedThread(func() error {
		if err := netns.Set(n.h); err != nil {
			return fmt.Errorf("enter %s: %w", n.Name, err)
		}
		return f()
	})
}

// run execs the plugin in n, like a runtime that lives in that netns: the
// child is forked from a thread switched into n and inherits it.
func (n *testNS) run(t *testing.T, env []string, stdin []byte) execResult {
	t.Helper()
	cmd, stdout, stderr := newPluginCmd(env, stdin)
	if err := n.inNS(cmd.Start); err != nil {
		t.Fatalf("start plugin in %s: %v", n.Name, err)
	}
	return waitPlugin(t, cmd, stdout, stderr)
}

// linuxEnv is a host netns with a fake agent; containers are added per test.
type linuxEnv struct {
	host  *testNS
	agent *fakeAgent
}

func newLinuxEnv(t *testing.T) *linuxEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to create network namespaces; run as root to test plumbing")
	}
	e := &linuxEnv{host: newTestNS(t, "h"), agent: newFakeAgent(t, t.TempDir())}
	// A source address for the host netns (as a real host has), so it can
	// ping containers. On lo: the kernel may lack the dummy driver.
	lo := mustLink(t, e.host, "lo")
	if err := e.host.NL.AddrAdd(lo, &netlink.Addr{IPNet: prefixIPNetPtr(netip.MustParsePrefix("198.19.0.1/32"))}); err != nil {
		t.Fatalf("address lo: %v", err)
	}
	if err := e.host.NL.LinkSetUp(lo); err != nil {
		t.Fatalf("lo up: %v", err)
	}
	return e
}

func (e *linuxEnv) conf(version, extra string) []byte {
	s := fmt.Sprintf(`{"cniVersion":%q,"name":"skein","type":"skein-cni","socket":%q,"logLevel":"debug"`, version, e.agent.socket)
	if extra != "" {
		s += "," + extra
	}
	return []byte(s + "}")
}

func cniEnv(cmd, id, netnsPath, cniArgs string) []string {
	return []string{
		"CNI_COMMAND=" + cmd, "CNI_CONTAINERID=" + id, "CNI_NETNS=" + netnsPath,
		"CNI_IFNAME=eth0", "CNI_PATH=/opt/cni/bin", "CNI_ARGS=" + cniArgs,
	}
}

const k8sArgs = "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=c1;K8S_POD_UID=77"

func TestLinuxAddCheckDel(t *testing.T) {
	t.Parallel()
	e := newLinuxEnv(t)
	c := newTestNS(t, "c")
	const id = "c1"
	owner := api.Owner{ContainerID: id, IfName: "eth0"}
	hostIface := api.HostIfaceName(owner)

	res := e.host.run(t, cniEnv("ADD", id, c.Path, k8sArgs), e.conf("1.1.0", ""))
	res.OK(t, "ADD")
	var r types100.Result
	if err := json.Unmarshal(res.Stdout, &r); err != nil {
		t.Fatalf("ADD output: %v\n%s", err, res.Stdout)
	}
	hostLink := mustLink(t, e.host, hostIface)
	wantResult := fmt.Sprintf(`{cniVersion:1.1.0 interfaces:[%s/%s/sandbox= eth0/mtu=1450/sandbox=%s] ips:[198.18.0.2/32 gw 169.254.1.1 if 1] routes:[0.0.0.0/0 via 169.254.1.1]}`,
		hostIface, hostLink.Attrs().HardwareAddr, c.Path)
	if got := summarize(&r); got != wantResult {
		t.Errorf("ADD result\n got %s\nwant %s", got, wantResult)
	}

	// Container side.
	cl := mustLink(t, c, "eth0")
	if cl.Attrs().MTU != 1450 || cl.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("container eth0 MTU %d flags %v, want 1450 and up", cl.Attrs().MTU, cl.Attrs().Flags)
	}
	assertAddr(t, c, cl, "198.18.0.2/32")
	assertRoute(t, c, cl, "169.254.1.1/32", "", netlink.SCOPE_LINK, -1)
	assertRoute(t, c, cl, "0.0.0.0/0", "169.254.1.1", netlink.SCOPE_UNIVERSE, -1)
	assertPermanentNeigh(t, c, cl, "169.254.1.1", hostLink.Attrs().HardwareAddr)
	// Host side.
	if hostLink.Type() != "veth" || hostLink.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("host %s type %s flags %v, want an up veth", hostIface, hostLink.Type(), hostLink.Attrs().Flags)
	}
	if addrs, err := e.host.NL.AddrList(hostLink, netlink.FAMILY_V4); err != nil || len(addrs) != 0 {
		t.Errorf("host veth IPv4 addresses = %v (err %v), want none", addrs, err)
	}
	assertRoute(t, e.host, hostLink, "198.18.0.2/32", "", netlink.SCOPE_LINK, api.RouteProtocol)
	if got := readSysctl(t, e.host, "ipv4/conf/"+hostIface+"/proxy_arp"); got != "1" {
		t.Errorf("proxy_arp on %s = %q, want 1", hostIface, got)
	}
	if err := ping(e.host, netip.MustParseAddr("198.18.0.2")); err != nil {
		t.Errorf("ping container from host: %v", err)
	}
	if d := e.agent.Commits(); len(d) != 1 || d[0].Pod.Namespace != "shop" || d[0].Pod.Name != "web-0" || d[0].HostIface != hostIface {
		t.Errorf("commits = %+v, want one for shop/web-0 on %s", d, hostIface)
	}

	// A second ADD for the same container fails and leaves the first alone.
	er := e.host.run(t, cniEnv("ADD", id, c.Path, k8sArgs), e.conf("1.1.0", "")).Error(t)
	if er.Code != errCodeAttachmentExists {
		t.Errorf("second ADD error = %+v, want code %d", er, errCodeAttachmentExists)
	}
	if l := mustLink(t, e.host, hostIface); l.Attrs().Index != hostLink.Attrs().Index {
		t.Errorf("second ADD replaced %s", hostIface)
	}
	if got := e.agent.Held(owner); len(got) != 1 {
		t.Errorf("agent holds %v after second ADD, want the first ADD's address", got)
	}
	if err := ping(e.host, netip.MustParseAddr("198.18.0.2")); err != nil {
		t.Errorf("ping after second ADD: %v", err)
	}

	// CHECK: fine, then broken twice over.
	check := e.conf("1.1.0", `"prevResult":`+string(res.Stdout))
	e.host.run(t, cniEnv("CHECK", id, c.Path, k8sArgs), check).OK(t, "CHECK after ADD")
	def := &netlink.Route{LinkIndex: cl.Attrs().Index, Dst: prefixIPNetPtr(netip.MustParsePrefix("0.0.0.0/0")), Gw: net.ParseIP("169.254.1.1")}
	if err := c.NL.RouteDel(def); err != nil {
		t.Fatalf("delete default route: %v", err)
	}
	er = e.host.run(t, cniEnv("CHECK", id, c.Path, k8sArgs), check).Error(t)
	if er.Code != errCodeCheckFailed || !strings.Contains(er.Details, "0.0.0.0/0 via 169.254.1.1") {
		t.Errorf("CHECK without default route = %+v, want code %d naming the route", er, errCodeCheckFailed)
	}
	if err := e.host.NL.LinkDel(hostLink); err != nil {
		t.Fatalf("delete host veth: %v", err)
	}
	er = e.host.run(t, cniEnv("CHECK", id, c.Path, k8sArgs), check).Error(t)
	if er.Code != errCodeCheckFailed || !strings.Contains(er.Details, "host veth "+hostIface+" missing") {
		t.Errorf("CHECK without host veth = %+v, want code %d naming %s", er, errCodeCheckFailed, hostIface)
	}

	// DEL, again, and with an empty CNI_NETNS.
	for i, nsPath := range []string{c.Path, c.Path, ""} {
		e.host.run(t, cniEnv("DEL", id, nsPath, k8sArgs), e.conf("1.1.0", "")).OK(t, fmt.Sprintf("DEL #%d", i+1))
	}
	assertNoLink(t, e.host, hostIface)
	assertNoLink(t, c, "eth0")
	if got := e.agent.Held(owner); got != nil {
		t.Errorf("agent holds %v after DEL", got)
	}
}

func TestLinuxAddMesos020(t *testing.T) {
	t.Parallel()
	e := newLinuxEnv(t)
	c := newTestNS(t, "c")
	const id = "6f1ee2c1-54c9-4cd4-a0e4-4a1b12f8d0f7" // a Mesos ContainerID
	args := `"args":{"org.apache.mesos":{"network_info":{"name":"skein","labels":{"labels":[{"key":"app","value":"db"}]}}}}`
	res := e.host.run(t, cniEnv("ADD", id, c.Path, ""), e.conf("0.2.0", args))
	res.OK(t, "ADD 0.2.0")
	var got struct {
		CNIVersion string `json:"cniVersion"`
		IP4        struct {
			IP      string `json:"ip"`
			Gateway string `json:"gateway"`
		} `json:"ip4"`
		Interfaces []any `json:"interfaces"`
	}
	if err := json.Unmarshal(res.Stdout, &got); err != nil {
		t.Fatalf("ADD output: %v\n%s", err, res.Stdout)
	}
	if got.CNIVersion != "0.2.0" || got.IP4.IP != "198.18.0.2/32" || got.IP4.Gateway != "169.254.1.1" || got.Interfaces != nil {
		t.Errorf("0.2.0 result = %s, want ip4.ip 198.18.0.2/32 via 169.254.1.1 and no interfaces", res.Stdout)
	}
	commits := e.agent.Commits()
	if len(commits) != 1 || commits[0].Pod.Name != id[:12] || commits[0].Pod.Namespace != "default" || commits[0].Pod.Labels["app"] != "db" {
		t.Errorf("commit = %+v, want default/%s with app=db", commits, id[:12])
	}
	if err := ping(e.host, netip.MustParseAddr("198.18.0.2")); err != nil {
		t.Errorf("ping container: %v", err)
	}
	e.host.run(t, cniEnv("DEL", id, c.Path, ""), e.conf("0.2.0", args)).OK(t, "DEL 0.2.0")
	assertNoLink(t, e.host, api.HostIfaceName(api.Owner{ContainerID: id, IfName: "eth0"}))
}

func TestLinuxDelAfterNetnsDeleted(t *testing.T) {
	t.Parallel()
	e := newLinuxEnv(t)
	c := newTestNS(t, "c")
	owner := api.Owner{ContainerID: "gone", IfName: "eth0"}
	e.host.run(t, cniEnv("ADD", owner.ContainerID, c.Path, ""), e.conf("1.1.0", "")).OK(t, "ADD")
	c.remove()
	e.host.run(t, cniEnv("DEL", owner.ContainerID, c.Path, ""), e.conf("1.1.0", "")).OK(t, "DEL after netns removal")
	// The kernel tears a dead netns down asynchronously; the veth goes with it.
	waitLinkGone(t, e.host, api.HostIfaceName(owner), 10*time.Second)
	if got := e.agent.Held(owner); got != nil {
		t.Errorf("agent holds %v after DEL", got)
	}
}

func TestLinuxAgentDown(t *testing.T) {
	t.Parallel()
	e := newLinuxEnv(t)
	c := newTestNS(t, "c")

	// No agent at all: 11 naming the socket, nothing plumbed.
	missing := filepath.Join(t.TempDir(), "none.sock")
	conf := []byte(`{"cniVersion":"1.1.0","name":"skein","type":"skein-cni","socket":"` + missing + `"}`)
	er := e.host.run(t, cniEnv("ADD", "c1", c.Path, ""), conf).Error(t)
	if er.Code != types.ErrTryAgainLater || !strings.Contains(er.Msg, missing) {
		t.Errorf("ADD with agent down = %+v, want code 11 naming %s", er, missing)
	}
	assertNoSkeinLinks(t, e.host)
	assertNoLink(t, c, "eth0")

	// Agent refuses the commit: the ADD rolls back veth and addresses.
	e.agent.setFailCommit(&api.AgentError{Code: types.ErrTryAgainLater, Message: "policy not in place"})
	er = e.host.run(t, cniEnv("ADD", "c1", c.Path, ""), e.conf("1.1.0", "")).Error(t)
	if er.Code != types.ErrTryAgainLater {
		t.Errorf("ADD with failing commit = %+v, want code 11", er)
	}
	assertNoSkeinLinks(t, e.host)
	assertNoLink(t, c, "eth0")
	if got := e.agent.Held(api.Owner{ContainerID: "c1", IfName: "eth0"}); got != nil {
		t.Errorf("agent holds %v after rolled back ADD", got)
	}

	// The agent dies after a good ADD: DEL removes the links, then says 11.
	e.agent.setFailCommit(nil)
	e.host.run(t, cniEnv("ADD", "c1", c.Path, ""), e.conf("1.1.0", "")).OK(t, "ADD")
	e.agent.stopKeepSocket()
	er = e.host.run(t, cniEnv("DEL", "c1", c.Path, ""), e.conf("1.1.0", "")).Error(t)
	if er.Code != types.ErrTryAgainLater || !strings.Contains(er.Msg, e.agent.socket) {
		t.Errorf("DEL with agent down = %+v, want code 11 naming the socket", er)
	}
	assertNoSkeinLinks(t, e.host)
	assertNoLink(t, c, "eth0")
}

func TestLinuxIfaceTaken(t *testing.T) {
	t.Parallel()
	e := newLinuxEnv(t)
	c := newTestNS(t, "c")
	// Someone else's eth0 (a veth, so only the MAC tells it is not ours).
	foreign := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "other0"}
	if err := c.NL.LinkAdd(foreign); err != nil {
		t.Fatalf("add foreign eth0: %v", err)
	}
	before := mustLink(t, c, "eth0").Attrs().Index

	er := e.host.run(t, cniEnv("ADD", "c1", c.Path, ""), e.conf("1.1.0", "")).Error(t)
	if !strings.Contains(er.Error(), "already exists") {
		t.Errorf("ADD into a netns with eth0 = %+v, want an error saying eth0 exists", er)
	}
	assertNoSkeinLinks(t, e.host)
	if got := e.agent.Held(api.Owner{ContainerID: "c1", IfName: "eth0"}); got != nil {
		t.Errorf("agent holds %v after failed ADD", got)
	}
	// The runtime's DEL after the failed ADD must not take the foreign eth0.
	e.host.run(t, cniEnv("DEL", "c1", c.Path, ""), e.conf("1.1.0", "")).OK(t, "DEL")
	if got := mustLink(t, c, "eth0").Attrs().Index; got != before {
		t.Errorf("foreign eth0 was replaced or deleted (index %d, was %d)", got, before)
	}
}

func TestLinuxGC(t *testing.T) {
	t.Parallel()
	e := newLinuxEnv(t)
	keep, drop := api.Owner{ContainerID: "keep", IfName: "eth0"}, api.Owner{ContainerID: "drop", IfName: "eth0"}
	ck, cd := newTestNS(t, "c"), newTestNS(t, "c")
	e.host.run(t, cniEnv("ADD", keep.ContainerID, ck.Path, ""), e.conf("1.1.0", "")).OK(t, "ADD keep")
	e.host.run(t, cniEnv("ADD", drop.ContainerID, cd.Path, ""), e.conf("1.1.0", "")).OK(t, "ADD drop")

	gc := e.conf("1.1.0", `"cni.dev/valid-attachments":[{"containerID":"keep","ifname":"eth0"}],"cni.dev/attachments":[{"containerID":"keep","ifname":"eth0"}]`)
	e.host.run(t, []string{"CNI_COMMAND=GC", "CNI_PATH=/opt/cni/bin"}, gc).OK(t, "GC")
	assertNoLink(t, e.host, api.HostIfaceName(drop))
	assertNoLink(t, cd, "eth0")
	mustLink(t, e.host, api.HostIfaceName(keep))
	if e.agent.Held(keep) == nil || e.agent.Held(drop) != nil {
		t.Errorf("after GC agent holds keep=%v drop=%v, want only keep", e.agent.Held(keep), e.agent.Held(drop))
	}
	if err := ping(e.host, e.agent.Held(keep)[0]); err != nil {
		t.Errorf("ping kept container: %v", err)
	}
}

// summarize renders the parts of a result the tests pin down.
func summarize(r *types100.Result) string {
	var intfs, ips, routes []string
	for _, i := range r.Interfaces {
		s := i.Name
		if i.Mac != "" && i.Sandbox == "" {
			s += "/" + i.Mac
		}
		if i.Mtu != 0 {
			s += fmt.Sprintf("/mtu=%d", i.Mtu)
		}
		intfs = append(intfs, s+"/sandbox="+i.Sandbox)
	}
	for _, ip := range r.IPs {
		idx := -1
		if ip.Interface != nil {
			idx = *ip.Interface
		}
		ips = append(ips, fmt.Sprintf("%s gw %s if %d", ip.Address.String(), ip.Gateway, idx))
	}
	for _, rt := range r.Routes {
		routes = append(routes, fmt.Sprintf("%s via %s", rt.Dst.String(), rt.GW))
	}
	return fmt.Sprintf("{cniVersion:%s interfaces:[%s] ips:[%s] routes:[%s]}",
		r.CNIVersion, strings.Join(intfs, " "), strings.Join(ips, " "), strings.Join(routes, " "))
}

func mustLink(t *testing.T, n *testNS, name string) netlink.Link {
	t.Helper()
	l, err := n.NL.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s in %s: %v", name, n.Name, err)
	}
	return l
}

func assertNoLink(t *testing.T, n *testNS, name string) {
	t.Helper()
	if n.NL == nil { // namespace already removed
		return
	}
	if l, err := n.NL.LinkByName(name); !isLinkNotFound(err) {
		t.Errorf("link %s in %s still exists (%v, err %v)", name, n.Name, l, err)
	}
}

// assertNoSkeinLinks checks that no host veth of ours is left in n.
func assertNoSkeinLinks(t *testing.T, n *testNS) {
	t.Helper()
	links, err := n.NL.LinkList()
	if err != nil {
		t.Fatalf("list links in %s: %v", n.Name, err)
	}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, "sk") {
			t.Errorf("link %s (%s) left in %s", l.Attrs().Name, l.Type(), n.Name)
		}
	}
}

func assertAddr(t *testing.T, n *testNS, l netlink.Link, want string) {
	t.Helper()
	addrs, err := n.NL.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatalf("list addresses: %v", err)
	}
	for _, a := range addrs {
		if a.IPNet.String() == want && a.Flags&unix.IFA_F_TENTATIVE == 0 {
			return
		}
	}
	t.Errorf("%s in %s has addresses %v, want %s", l.Attrs().Name, n.Name, addrs, want)
}

// assertRoute finds a main-table route out of l; proto -1 accepts any.
func assertRoute(t *testing.T, n *testNS, l netlink.Link, dst, gw string, scope netlink.Scope, proto int) {
	t.Helper()
	routes, err := n.NL.RouteList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatalf("list routes: %v", err)
	}
	for _, r := range routes {
		d := "0.0.0.0/0"
		if r.Family == netlink.FAMILY_V6 {
			d = "::/0"
		}
		if r.Dst != nil {
			d = r.Dst.String()
		}
		g := ""
		if r.Gw != nil {
			g = r.Gw.String()
		}
		if d == dst && g == gw && r.Scope == scope && (proto < 0 || int(r.Protocol) == proto) {
			return
		}
	}
	t.Errorf("%s in %s: no route %s gw %q scope %v proto %d among %v", l.Attrs().Name, n.Name, dst, gw, scope, proto, routes)
}

func assertPermanentNeigh(t *testing.T, n *testNS, l netlink.Link, ip string, mac net.HardwareAddr) {
	t.Helper()
	family := netlink.FAMILY_V4
	if strings.Contains(ip, ":") {
		family = netlink.FAMILY_V6
	}
	neighs, err := n.NL.NeighList(l.Attrs().Index, family)
	if err != nil {
		t.Fatalf("list neighbours: %v", err)
	}
	for _, ne := range neighs {
		if ne.IP.String() == ip && ne.HardwareAddr.String() == mac.String() && ne.State&netlink.NUD_PERMANENT != 0 {
			return
		}
	}
	t.Errorf("%s in %s: no permanent neighbour %s lladdr %s among %v", l.Attrs().Name, n.Name, ip, mac, neighs)
}

// readSysctl reads /proc/sys/net/<key> as seen from n.
func readSysctl(t *testing.T, n *testNS, key string) string {
	t.Helper()
	var b []byte
	err := n.inNS(func() error {
		var err error
		b, err = os.ReadFile(filepath.Join("/proc/sys/net", key))
		return err
	})
	if err != nil {
		t.Fatalf("read sysctl %s in %s: %v", key, n.Name, err)
	}
	return strings.TrimSpace(string(b))
}

// ping sends ICMP echo requests from n to dst until one is answered or a
// generous deadline passes (the first may wait for ARP).
func ping(n *testNS, dst netip.Addr) error {
	var conn net.PacketConn
	network, laddr, echo, reply := "ip4:icmp", "0.0.0.0", byte(8), byte(0)
	if dst.Is6() {
		// The kernel fills in ICMPv6 checksums on raw sockets.
		network, laddr, echo, reply = "ip6:ipv6-icmp", "::", 128, 129
	}
	if err := n.inNS(func() error {
		var err error
		conn, err = net.ListenPacket(network, laddr) // the socket stays in n
		return err
	}); err != nil {
		return fmt.Errorf("open ICMP socket: %w", err)
	}
	defer func() { _ = conn.Close() }() // test helper; nothing to report
	id := uint16(os.Getpid())
	buf := make([]byte, 1500)
	deadline := time.Now().Add(10 * time.Second)
	for seq := uint16(1); time.Now().Before(deadline); seq++ {
		req := []byte{echo, 0, 0, 0, byte(id >> 8), byte(id), byte(seq >> 8), byte(seq), 's', 'k', 'e', 'i', 'n'}
		if dst.Is4() {
			binary.BigEndian.PutUint16(req[2:], icmpChecksum(req))
		}
		if _, err := conn.WriteTo(req, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			return fmt.Errorf("send echo to %s: %w", dst, err)
		}
		if err := conn.SetReadDeadline(time.Now().Add(time.Second)); err != nil {
			return err
		}
		for {
			m, from, err := conn.ReadFrom(buf)
			if err != nil {
				break // read deadline: send the next request
			}
			if from.String() == dst.String() && m >= 8 && buf[0] == reply &&
				binary.BigEndian.Uint16(buf[4:]) == id && binary.BigEndian.Uint16(buf[6:]) == seq {
				return nil
			}
		}
	}
	return fmt.Errorf("no echo reply from %s within 10s", dst)
}

func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// waitLinkGone waits, driven by link notifications from n, until the link
// called name no longer exists there.
func waitLinkGone(t *testing.T, n *testNS, name string, timeout time.Duration) {
	t.Helper()
	ch := make(chan netlink.LinkUpdate, 16)
	done := make(chan struct{})
	h := n.h
	if err := netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{Namespace: &h}); err != nil {
		t.Fatalf("subscribe to links in %s: %v", n.Name, err)
	}
	defer func() {
		close(done)
		go func() {
			for range ch { // unblock the subscription until it closes ch
			}
		}()
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		// Checked after subscribing, so a deletion in between is not missed.
		if _, err := n.NL.LinkByName(name); isLinkNotFound(err) {
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("link %s still in %s after %v", name, n.Name, timeout)
		}
	}
}
