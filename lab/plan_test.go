package lab

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/skeinnet/skein/api"
)

func TestUnderlayPlan(t *testing.T) {
	t.Parallel()
	tests := []struct {
		subnet, index int
		prefix        string
		addr          string
		gw            string
	}{
		{0, 1, "10.255.0.0/24", "10.255.0.1", "10.255.0.254"},
		{0, 253, "10.255.0.0/24", "10.255.0.253", "10.255.0.254"},
		{3, 7, "10.255.3.0/24", "10.255.3.7", "10.255.3.254"},
	}
	for _, tc := range tests {
		got := []string{UnderlayPrefix(tc.subnet).String(), UnderlayAddr(tc.subnet, tc.index).String(), UnderlayGateway(tc.subnet).String()}
		want := []string{tc.prefix, tc.addr, tc.gw}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("subnet %d index %d mismatch (-want +got):\n%s", tc.subnet, tc.index, d)
		}
		if !UnderlayPrefix(tc.subnet).Contains(UnderlayAddr(tc.subnet, tc.index)) {
			t.Errorf("UnderlayPrefix(%d) does not contain UnderlayAddr(%d, %d)", tc.subnet, tc.subnet, tc.index)
		}
	}
}

func TestUnderlayPlan6(t *testing.T) {
	t.Parallel()
	tests := []struct {
		subnet, index int
		prefix        string
		addr          string
		gw            string
		tor           string
	}{
		{0, 1, "fd00:255::/64", "fd00:255::1", "fd00:255::fe", "fd00:255::fd"},
		{0, 10, "fd00:255::/64", "fd00:255::a", "fd00:255::fe", "fd00:255::fd"},
		{0, 253, "fd00:255::/64", "fd00:255::fd", "fd00:255::fe", "fd00:255::fd"},
		{3, 7, "fd00:255:3::/64", "fd00:255:3::7", "fd00:255:3::fe", "fd00:255:3::fe"},
	}
	for _, tc := range tests {
		got := []string{UnderlayPrefix6(tc.subnet).String(), UnderlayAddr6(tc.subnet, tc.index).String(),
			UnderlayGateway6(tc.subnet).String(), ToRAddr6(tc.subnet).String()}
		want := []string{tc.prefix, tc.addr, tc.gw, tc.tor}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("subnet %d index %d mismatch (-want +got):\n%s", tc.subnet, tc.index, d)
		}
		if !UnderlayPrefix6(tc.subnet).Contains(UnderlayAddr6(tc.subnet, tc.index)) {
			t.Errorf("UnderlayPrefix6(%d) does not contain UnderlayAddr6(%d, %d)", tc.subnet, tc.subnet, tc.index)
		}
	}
}

func TestHostPlanUnderlayFamilies(t *testing.T) {
	t.Parallel()
	addr := netip.MustParseAddr
	for _, tc := range []struct {
		underlay string
		ip, ip6  netip.Addr
		prefixes string
		gws      string
	}{
		{"", addr("10.255.2.3"), netip.Addr{}, "10.255.2.3/24", "10.255.2.254"},
		{"ipv4", addr("10.255.2.3"), netip.Addr{}, "10.255.2.3/24", "10.255.2.254"},
		{"dual", addr("10.255.2.3"), addr("fd00:255:2::3"), "10.255.2.3/24, fd00:255:2::3/64", "10.255.2.254 fd00:255:2::fe"},
		{"ipv6", addr("fd00:255:2::3"), addr("fd00:255:2::3"), "fd00:255:2::3/64", "fd00:255:2::fe"},
	} {
		h := newHost("sklab", "/run/skein-lab/sklab", tc.underlay, 2, 3)
		if h.UnderlayIP != tc.ip || h.UnderlayIP6 != tc.ip6 {
			t.Errorf("underlay %q: host addresses %s %s, want %s %s", tc.underlay, h.UnderlayIP, h.UnderlayIP6, tc.ip, tc.ip6)
		}
		if got := joinPrefixes(h.underlayPrefixes()); got != tc.prefixes {
			t.Errorf("underlay %q: host prefixes %s, want %s", tc.underlay, got, tc.prefixes)
		}
		var gws []string
		for _, g := range underlayGateways(tc.underlay, 2) {
			gws = append(gws, g.String())
		}
		if got := strings.Join(gws, " "); got != tc.gws {
			t.Errorf("underlay %q: gateways %s, want %s", tc.underlay, got, tc.gws)
		}
	}
}

func TestEtcdPlanUnderlayFamilies(t *testing.T) {
	t.Parallel()
	v6 := etcdMembers("sklab", "/run/skein-lab/sklab", 2, false, UnderlayIPv6)
	if v6[0].ClientURL != "http://[fd00:255::fe]:2379" || v6[1].ClientURL != "http://[fd00:255::fe]:22379" || v6[0].ClientURL6 != "" {
		t.Errorf("ipv6 underlay: client URLs %q %q (ClientURL6 %q), want etcd on [fd00:255::fe]", v6[0].ClientURL, v6[1].ClientURL, v6[0].ClientURL6)
	}
	dual := etcdMembers("sklab", "/run/skein-lab/sklab", 1, true, UnderlayDual)
	want := []string{"https://10.255.0.254:2379", "https://[fd00:255::fe]:2379", "unixs:///run/skein-lab/sklab/etcd.sock"}
	if d := cmp.Diff(want, dual[0].clientURLs()); d != "" {
		t.Errorf("dual underlay: client URLs mismatch (-want +got):\n%s", d)
	}
	args := strings.Join(etcdArgs(dual[0], dual, "t", nil), " ")
	if !strings.Contains(args, "--"+EtcdFlagClientURLs+" "+strings.Join(want, ",")) {
		t.Errorf("dual underlay: etcd args %s do not listen on %v", args, want)
	}
	tmpl, err := serverTemplate(dual[0])
	if err != nil {
		t.Fatal(err)
	}
	var sans []string
	for _, ip := range tmpl.IPAddresses {
		sans = append(sans, ip.String())
	}
	if got := strings.Join(sans, " "); got != "127.0.0.1 10.255.0.254 fd00:255::fe" {
		t.Errorf("dual underlay: certificate IP SANs %s, want 127.0.0.1 10.255.0.254 fd00:255::fe", got)
	}
}

func TestConfigUnderlay(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"ipv4", "dual", "ipv6"} {
		if err := (Config{BinDir: "/b", Underlay: u}).withDefaults().validate(); err != nil {
			t.Errorf("underlay %s: %v", u, err)
		}
	}
	err := Config{BinDir: "/b", Underlay: "v6"}.withDefaults().validate()
	if err == nil || !strings.Contains(err.Error(), `underlay "v6": must be ipv4, dual or ipv6`) {
		t.Errorf("underlay v6: %v, want an error naming the value", err)
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	got := Config{BinDir: "/b"}.withDefaults()
	got.Log = nil
	want := Config{
		Name: "sklab", Hosts: 3, ContainersPerHost: 2, Backend: "vxlan", BinDir: "/b",
		RunDir: "/run/skein-lab/sklab", PodCIDR: "10.244.0.0/16", BlockSize: 26, BlockSizeV6: 122, Subnets: 1, EtcdMembers: 1,
		Underlay: "ipv4",
	}
	if d := cmp.Diff(want, got, cmp.AllowUnexported(Config{})); d != "" {
		t.Errorf("withDefaults() mismatch (-want +got):\n%s", d)
	}
	none := Config{Name: "x", Hosts: -1, ContainersPerHost: -1}.withDefaults()
	if none.Hosts != 0 || none.ContainersPerHost != 0 || none.RunDir != "/run/skein-lab/x" {
		t.Errorf("negative counts: got hosts %d containers %d run dir %s, want 0 0 /run/skein-lab/x", none.Hosts, none.ContainersPerHost, none.RunDir)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // substring; "" means valid
	}{
		{"defaults", Config{BinDir: "/b"}, ""},
		{"bgp", Config{BinDir: "/b", Backend: "bgp"}, ""},
		{"no bin dir", Config{}, "bin dir is required"},
		{"dash in name", Config{BinDir: "/b", Name: "my-lab"}, "lab name"},
		{"upper case name", Config{BinDir: "/b", Name: "Lab"}, "lab name"},
		{"long name", Config{BinDir: "/b", Name: "abcdefghijklmnopq"}, "lab name"},
		{"backend", Config{BinDir: "/b", Backend: "flannel"}, "backend"},
		{"too many hosts", Config{BinDir: "/b", Hosts: 254}, "at most 253"},
		{"relative run dir", Config{BinDir: "/b", RunDir: "run"}, "absolute"},
		{"bad pod CIDR", Config{BinDir: "/b", PodCIDR: "10.244.0.1/16"}, "host bits"},
		{"block bigger than pool", Config{BinDir: "/b", PodCIDR: "10.244.0.0/24", BlockSize: 20}, "pool"},
		{"dual-stack", Config{BinDir: "/b", PodCIDR: "10.244.0.0/16,fd00:10:244::/56"}, ""},
		{"v6 block size", Config{BinDir: "/b", PodCIDR: "10.244.0.0/16,fd00:10:244::/56", BlockSizeV6: 64}, "pod CIDR[1]: pool fd00:10:244::/56: IPv6 block size /64"},
		{"v6 only", Config{BinDir: "/b", PodCIDR: "fd00:10:244::/56"}, ""},
		{"v6 only on an ipv6 underlay", Config{BinDir: "/b", PodCIDR: "fd00:10:244::/56", Underlay: UnderlayIPv6}, ""},
		{"v6 only with bgp", Config{BinDir: "/b", Backend: "bgp", Underlay: UnderlayDual, PodCIDR: "fd00:10:244::/56"}, ""},
		{"v6 only with bgp on an ipv4 underlay", Config{BinDir: "/b", Backend: "bgp", PodCIDR: "fd00:10:244::/56"}, "backend bgp with IPv6 pods: needs --underlay dual"},
		{"v6 only with wireguard", Config{BinDir: "/b", Encryption: "wireguard", PodCIDR: "fd00:10:244::/56"}, ""},
		{"v6 with bgp on an ipv4 underlay", Config{BinDir: "/b", Backend: "bgp", PodCIDR: "10.244.0.0/16,fd00:10:244::/56"}, "backend bgp with IPv6 pods: needs --underlay dual"},
		{"v6 with bgp on a dual underlay", Config{BinDir: "/b", Backend: "bgp", Underlay: UnderlayDual, PodCIDR: "10.244.0.0/16,fd00:10:244::/56"}, ""},
		{"v6 with bgp behind frr", Config{BinDir: "/b", Backend: "bgp", ToR: "frr", Subnets: 2, Underlay: UnderlayDual, PodCIDR: "10.244.0.0/16,fd00:10:244::/56"}, ""},
		{"bgp on an ipv6 underlay", Config{BinDir: "/b", Backend: "bgp", Underlay: UnderlayIPv6}, "backend bgp: needs an IPv4 underlay"},
		{"tor on an ipv6 underlay", Config{BinDir: "/b", ToR: ToRBIRD, VXLANDirectRouting: true, Underlay: UnderlayIPv6}, "tor bird: needs an IPv4 underlay"},
		{"tor ipv6 sessions", Config{BinDir: "/b", Backend: "bgp", ToR: ToRFRR, ToRIPv6Sessions: true, Underlay: UnderlayDual, PodCIDR: "10.244.0.0/16,fd00:10:244::/56"}, ""},
		{"tor ipv6 sessions without a dual underlay", Config{BinDir: "/b", Backend: "bgp", ToR: ToRBIRD, ToRIPv6Sessions: true}, "tor ipv6 sessions: need --tor bird|frr, --backend bgp and --underlay dual"},
		{"tor ipv6 sessions without a tor", Config{BinDir: "/b", Backend: "bgp", ToRIPv6Sessions: true, Underlay: UnderlayDual}, `have tor ""`},
		{"bird tor", Config{BinDir: "/b", Backend: "bgp", ToR: "bird"}, ""},
		{"frr tor on two subnets", Config{BinDir: "/b", Backend: "bgp", ToR: "frr", Subnets: 2}, ""},
		{"tor with vxlan", Config{BinDir: "/b", ToR: "bird"}, "needs backend bgp"},
		{"tor with vxlan direct routing", Config{BinDir: "/b", ToR: "bird", Subnets: 2, VXLANDirectRouting: true}, ""},
		{"direct routing with bgp", Config{BinDir: "/b", Backend: "bgp", VXLANDirectRouting: true}, "vxlan direct routing: needs backend vxlan, not bgp"},
		{"unknown tor", Config{BinDir: "/b", Backend: "bgp", ToR: "quagga"}, `tor "quagga"`},
		{"two subnets without tor", Config{BinDir: "/b", Backend: "bgp", Subnets: 2}, "need a router between them"},
		{"too many subnets", Config{BinDir: "/b", Backend: "bgp", ToR: "bird", Subnets: 5}, "between 1 and 4"},
		{"three etcd members with TLS", Config{BinDir: "/b", EtcdMembers: 3, EtcdTLS: true}, ""},
		{"too many etcd members", Config{BinDir: "/b", EtcdMembers: 6}, "etcd members 6: must be between 1 and 5"},
		{"negative etcd members", Config{BinDir: "/b", EtcdMembers: -1}, "etcd members -1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.withDefaults().validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("validate() = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("validate() = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	vx, err := Config{BinDir: "/b"}.withDefaults().cluster()
	if err != nil {
		t.Fatal(err)
	}
	wantVX := api.Cluster{
		Pools:   []api.Pool{{CIDR: netip.MustParsePrefix("10.244.0.0/16"), BlockSize: 26}},
		Backend: api.BackendVXLAN,
		VXLAN:   api.VXLANConfig{VNI: 4096, Port: 4789},
	}
	if d := cmp.Diff(wantVX, vx, cmpopts.EquateComparable(netip.Prefix{})); d != "" {
		t.Errorf("cluster() vxlan mismatch (-want +got):\n%s", d)
	}
	bgp, err := Config{BinDir: "/b", Backend: "bgp"}.withDefaults().cluster()
	if err != nil {
		t.Fatal(err)
	}
	if bgp.BGP == nil || bgp.BGP.ASN != api.DefaultASN || !bgp.BGP.NodeMesh {
		t.Errorf("cluster() bgp: BGP = %+v, want ASN %d with node mesh", bgp.BGP, api.DefaultASN)
	}
	rr, err := Config{BinDir: "/b", Backend: "bgp", ToR: "frr"}.withDefaults().cluster()
	if err != nil {
		t.Fatal(err)
	}
	if rr.BGP == nil || rr.BGP.ASN != api.DefaultASN || rr.BGP.NodeMesh {
		t.Errorf("cluster() bgp with a ToR: BGP = %+v, want ASN %d without node mesh", rr.BGP, api.DefaultASN)
	}
}

func TestHostPlan(t *testing.T) {
	t.Parallel()
	h := newHost("sklab", "/run/skein-lab/sklab", "", 0, 2)
	want := Host{
		Name: "sklab-h2", Index: 2, UnderlayIP: netip.MustParseAddr("10.255.0.2"),
		Socket: "/run/skein-lab/sklab/h2/skeind.sock", StateDir: "/run/skein-lab/sklab/h2/state",
		LogPath: "/run/skein-lab/sklab/h2/skeind.log", DebugAddr: "127.0.0.1:9595",
		CNIConfig: "/run/skein-lab/sklab/cni/h2/10-skein.conflist",
	}
	if d := cmp.Diff(want, h, cmpopts.EquateComparable(netip.Addr{})); d != "" {
		t.Errorf("newHost() mismatch (-want +got):\n%s", d)
	}
	gotArgs := skeindArgs(h, []string{"http://10.255.0.254:2379"}, nil)
	wantArgs := []string{
		"--node-name", "sklab-h2", "--etcd-endpoints", "http://10.255.0.254:2379", "--iface", "eth0",
		"--socket", "/run/skein-lab/sklab/h2/skeind.sock", "--state-dir", "/run/skein-lab/sklab/h2/state",
		"--debug-addr", "127.0.0.1:9595",
	}
	if d := cmp.Diff(wantArgs, gotArgs); d != "" {
		t.Errorf("skeindArgs() mismatch (-want +got):\n%s", d)
	}
	if err := api.ValidateNodeName(h.Name); err != nil {
		t.Errorf("host name is not a valid node name: %v", err)
	}
}

func TestEtcdPlan(t *testing.T) {
	t.Parallel()
	// One member keeps the layout of a single-member lab.
	one := etcdMembers("sklab", "/run/skein-lab/sklab", 1, false, "")
	wantOne := []Etcd{{
		Name: "etcd1", NetNS: "sklab-ul",
		ClientURL: "http://10.255.0.254:2379", AdminURL: "unix:///run/skein-lab/sklab/etcd.sock",
		PeerURL: "http://127.0.0.1:2380", Dir: "/run/skein-lab/sklab/etcd", LogPath: "/run/skein-lab/sklab/etcd/etcd.log",
	}}
	if d := cmp.Diff(wantOne, one); d != "" {
		t.Errorf("etcdMembers(1) mismatch (-want +got):\n%s", d)
	}
	got := etcdArgs(one[0], one, "sklab", nil)
	want := []string{"lab", "etcd", "--dir", "/run/skein-lab/sklab/etcd/data", "--listen-client-urls", "http://10.255.0.254:2379,unix:///run/skein-lab/sklab/etcd.sock", "--peer-url", "http://127.0.0.1:2380"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("etcdArgs() mismatch (-want +got):\n%s", d)
	}

	// Three members with TLS: own ports, sockets, data and certificates;
	// every URL is secure; each knows the whole cluster.
	three := etcdMembers("skd", "/run/skein-lab/skd", 3, true, "")
	if len(three) != 3 {
		t.Fatalf("etcdMembers(3) = %d members", len(three))
	}
	m3 := three[2]
	wantM3 := Etcd{
		Name: "etcd3", NetNS: "skd-ul",
		ClientURL: "https://10.255.0.254:32379", AdminURL: "unixs:///run/skein-lab/skd/etcd3.sock",
		PeerURL: "https://127.0.0.1:32380", Dir: "/run/skein-lab/skd/etcd3", LogPath: "/run/skein-lab/skd/etcd3/etcd.log",
		CertFile: "/run/skein-lab/skd/tls/etcd3.pem", KeyFile: "/run/skein-lab/skd/tls/etcd3-key.pem",
	}
	if d := cmp.Diff(wantM3, m3); d != "" {
		t.Errorf("etcdMembers(3)[2] mismatch (-want +got):\n%s", d)
	}
	tls := &TLSFiles{CA: "/t/ca.pem", Cert: "/t/client.pem", Key: "/t/client-key.pem"}
	got = etcdArgs(m3, three, "skd", tls)
	want = []string{"lab", "etcd", "--dir", "/run/skein-lab/skd/etcd3/data",
		"--listen-client-urls", "https://10.255.0.254:32379,unixs:///run/skein-lab/skd/etcd3.sock",
		"--peer-url", "https://127.0.0.1:32380",
		"--name", "etcd3",
		"--initial-cluster", "etcd1=https://127.0.0.1:2380,etcd2=https://127.0.0.1:22380,etcd3=https://127.0.0.1:32380",
		"--cluster-token", "skd",
		"--cert", "/run/skein-lab/skd/tls/etcd3.pem", "--key", "/run/skein-lab/skd/tls/etcd3-key.pem", "--ca", "/t/ca.pem"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("etcdArgs(TLS member 3) mismatch (-want +got):\n%s", d)
	}
	if !argsOfRunDir(got, "/run/skein-lab/skd") {
		t.Error("a member's arguments do not mark it as the lab's process, so Down would miss it")
	}
	h := newHost("skd", "/run/skein-lab/skd", "", 0, 1)
	args := skeindArgs(h, []string{three[0].ClientURL, three[1].ClientURL, three[2].ClientURL}, tls)
	wantTail := []string{"--etcd-ca", "/t/ca.pem", "--etcd-cert", "/t/client.pem", "--etcd-key", "/t/client-key.pem"}
	if d := cmp.Diff(wantTail, args[len(args)-6:]); d != "" {
		t.Errorf("skeindArgs(TLS) tail mismatch (-want +got):\n%s", d)
	}
	if args[3] != "https://10.255.0.254:2379,https://10.255.0.254:22379,https://10.255.0.254:32379" {
		t.Errorf("skeindArgs(3 members) endpoints = %s, want every member", args[3])
	}
}

func TestConflist(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		labels map[string]string
		ports  []api.NamedPort
		want   string
	}{
		{
			name: "plain",
			want: `{"cniVersion":"1.1.0","name":"skein","plugins":[{"type":"skein-cni","socket":"/s.sock"}]}`,
		},
		{
			name:   "labels sorted and ports",
			labels: map[string]string{"tier": "web", "app": "a"},
			ports:  []api.NamedPort{{Name: "http", Port: 80, Protocol: "TCP"}},
			want: `{"cniVersion":"1.1.0","name":"skein","plugins":[{"type":"skein-cni","socket":"/s.sock","args":{"cni":{` +
				`"labels":[{"key":"app","value":"a"},{"key":"tier","value":"web"}]},"skein":{"ports":[{"name":"http","port":80,"protocol":"TCP"}]}}}]}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := conflist("/s.sock", tc.labels, tc.ports)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, string(b)); d != "" {
				t.Errorf("conflist() mismatch (-want +got):\n%s", d)
			}
			// libcni must accept it and hand the plugin its args.
			list, err := libcni.ConfListFromBytes(b)
			if err != nil {
				t.Fatalf("libcni rejects the conflist: %v", err)
			}
			if list.Name != CNINetwork || list.CNIVersion != CNIVersion || len(list.Plugins) != 1 || list.Plugins[0].Network.Type != PluginType {
				t.Fatalf("libcni parsed %+v", list)
			}
			var plugin map[string]any
			if err := json.Unmarshal(list.Plugins[0].Bytes, &plugin); err != nil {
				t.Fatal(err)
			}
			if _, ok := plugin["args"]; ok != (len(tc.labels)+len(tc.ports) > 0) {
				t.Errorf("plugin bytes %s: args present %v", list.Plugins[0].Bytes, ok)
			}
		})
	}
}

func TestArgsOfRunDir(t *testing.T) {
	t.Parallel()
	const run = "/run/skein-lab/sklab"
	h := newHost("sklab", run, "", 0, 1)
	ms := etcdMembers("sklab", run, 1, false, "")
	tests := []struct {
		name string
		args []string
		want bool
	}{
		{"agent", append([]string{"/bin/skeind"}, skeindArgs(h, []string{"http://10.255.0.254:2379"}, nil)...), true},
		{"etcd", append([]string{"/bin/skein"}, etcdArgs(ms[0], ms, "sklab", nil)...), true},
		{"another lab's agent", append([]string{"/bin/skeind"}, skeindArgs(newHost("sklab2", "/run/skein-lab/sklab2", "", 0, 1), []string{"x"}, nil)...), false},
		{"shell naming a file", []string{"bash", "-c", "tail -f " + run + "/h1/skeind.log --socket " + run + "/h1/skeind.sock"}, false},
		{"lab exec", []string{"skein", "lab", "exec", "h1", "--", "cat", run + "/h1/skeind.log"}, false},
		{"flag without value", []string{"skeind", "--socket"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := argsOfRunDir(tc.args, run); got != tc.want {
				t.Errorf("argsOfRunDir(%q) = %v, want %v", tc.args, got, tc.want)
			}
		})
	}
}

func TestCNIArgs(t *testing.T) {
	t.Parallel()
	want := [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "prod"}, {"K8S_POD_NAME", "web-1"}}
	if d := cmp.Diff(want, cniArgs("prod", "web-1")); d != "" {
		t.Errorf("cniArgs() mismatch (-want +got):\n%s", d)
	}
}

func testState() State {
	return State{
		Name:       "sklab",
		UnderlayNS: "sklab-ul",
		Hosts:      []Host{{Name: "sklab-h1", Index: 1}, {Name: "sklab-h2", Index: 2}},
		Containers: []Container{
			{Name: "sklab-h1-c1", Host: "sklab-h1", Index: 1, PodNS: "default", PodName: "h1-c1"},
			{Name: "sklab-h2-c1", Host: "sklab-h2", Index: 1, PodNS: "prod", PodName: "web"},
			{Name: "sklab-h2-c2", Host: "sklab-h2", Index: 2, PodNS: "dev", PodName: "web"},
		},
	}
}

func TestResolveNS(t *testing.T) {
	t.Parallel()
	st := testState()
	tests := []struct {
		name     string
		want     string
		wantErr  string
		notFound bool
	}{
		{name: "h1", want: "sklab-h1"},
		{name: "sklab-h2", want: "sklab-h2"},
		{name: "ul", want: "sklab-ul"},
		{name: "sklab-ul", want: "sklab-ul"},
		{name: "h1-c1", want: "sklab-h1-c1"},
		{name: "sklab-h2-c2", want: "sklab-h2-c2"},
		{name: "prod/web", want: "sklab-h2-c1"},
		{name: "web", wantErr: "ambiguous"},
		{name: "h3", notFound: true},
		{name: "other-h1", notFound: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := st.resolveNS(tc.name)
			switch {
			case tc.notFound:
				if !errors.Is(err, ErrNotFound) {
					t.Errorf("resolveNS(%q) = %q, %v; want ErrNotFound", tc.name, got, err)
				}
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("resolveNS(%q) = %q, %v; want an error containing %q", tc.name, got, err, tc.wantErr)
				}
			case err != nil || got != tc.want:
				t.Errorf("resolveNS(%q) = %q, %v; want %q", tc.name, got, err, tc.want)
			}
		})
	}
}

func TestSortState(t *testing.T) {
	t.Parallel()
	st := State{
		Hosts: []Host{{Name: "l-h10", Index: 10}, {Name: "l-h2", Index: 2}},
		Containers: []Container{
			{Name: "l-h10-c1", Host: "l-h10", Index: 1},
			{Name: "l-h2-c11", Host: "l-h2", Index: 11},
			{Name: "l-h2-c3", Host: "l-h2", Index: 3},
		},
	}
	st.sortState()
	var got []string
	for _, h := range st.Hosts {
		got = append(got, h.Name)
	}
	for _, c := range st.Containers {
		got = append(got, c.Name)
	}
	want := []string{"l-h2", "l-h10", "l-h2-c3", "l-h2-c11", "l-h10-c1"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("sortState() mismatch (-want +got):\n%s", d)
	}
	if n := st.nextHostIndex(); n != 11 {
		t.Errorf("nextHostIndex() = %d, want 11", n)
	}
}

func TestFilterNamespaces(t *testing.T) {
	t.Parallel()
	all := []string{"sklab-ul", "sklab2-h1", "sklab-h1", "sklab-h1-c2", "other", "sklab-h10-c1", "sklab", "sklab-h2"}
	got := filterNamespaces("sklab", all)
	want := []string{"sklab-h1-c2", "sklab-h10-c1", "sklab-h1", "sklab-h2", "sklab-ul"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("filterNamespaces() mismatch (-want +got):\n%s", d)
	}
}

func TestStateFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st := testState()
	st.RunDir = dir
	st.Hosts[0].UnderlayIP = netip.MustParseAddr("10.255.0.1")
	st.Containers[0].IP = netip.MustParseAddr("10.244.0.2")
	st.Containers[0].Labels = map[string]string{"app": "a"}
	if err := writeState(st); err != nil {
		t.Fatal(err)
	}
	got, err := readState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(st, got, cmpopts.EquateComparable(netip.Addr{})); d != "" {
		t.Errorf("state round trip mismatch (-want +got):\n%s", d)
	}
	if err := os.WriteFile(filepath.Join(dir, stateFile), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readState(dir); err == nil {
		t.Error("readState() of corrupt lab.json succeeded")
	}
	if _, err := readState(filepath.Join(dir, "missing")); !errors.Is(err, ErrNotFound) {
		t.Errorf("readState() of missing dir = %v, want ErrNotFound", err)
	}
}

func TestCheckAbsent(t *testing.T) {
	t.Parallel()
	const name = "skunitabsent" // no namespace of this name exists
	empty := t.TempDir()
	if err := checkAbsent(name, empty); err != nil {
		t.Errorf("checkAbsent(empty dir) = %v", err)
	}
	if err := checkAbsent(name, filepath.Join(empty, "missing")); err != nil {
		t.Errorf("checkAbsent(missing dir) = %v", err)
	}
	withState := t.TempDir()
	if err := os.WriteFile(filepath.Join(withState, stateFile), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkAbsent(name, withState); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "skein lab down") {
		t.Errorf("checkAbsent(dir with lab.json) = %v, want ErrExists suggesting skein lab down", err)
	}
	foreign := t.TempDir()
	if err := os.WriteFile(filepath.Join(foreign, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkAbsent(name, foreign); err == nil || errors.Is(err, ErrExists) {
		t.Errorf("checkAbsent(foreign non-empty dir) = %v, want a non-ErrExists error", err)
	}
}

func TestRemoveRunDir(t *testing.T) {
	t.Parallel()
	mk := func(marker string, extra bool) string {
		d := filepath.Join(t.TempDir(), "run")
		if err := os.MkdirAll(filepath.Join(d, "h1"), 0o755); err != nil {
			t.Fatal(err)
		}
		if marker != "" {
			if err := os.WriteFile(filepath.Join(d, markerFile), []byte(marker+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if !extra {
			if err := os.Remove(filepath.Join(d, "h1")); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	tests := []struct {
		name    string
		dir     string
		wantErr bool
		gone    bool
	}{
		{"ours", mk("sklab", true), false, true},
		{"another lab's", mk("other", true), true, false},
		{"unmarked non-empty", mk("", true), true, false},
		{"unmarked empty", mk("", false), false, true},
		{"missing", filepath.Join(t.TempDir(), "nope"), false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := removeRunDir("sklab", tc.dir)
			if (err != nil) != tc.wantErr {
				t.Errorf("removeRunDir() = %v, want error %v", err, tc.wantErr)
			}
			_, serr := os.Stat(tc.dir)
			if gone := os.IsNotExist(serr); gone != tc.gone {
				t.Errorf("run dir gone = %v, want %v", gone, tc.gone)
			}
		})
	}
}

func TestEchoRequest(t *testing.T) {
	t.Parallel()
	b := echoRequest(0x1234, 7, false)
	if b[0] != icmpEchoRequest || b[1] != 0 {
		t.Errorf("type/code = %d/%d, want 8/0", b[0], b[1])
	}
	if id, seq := binary.BigEndian.Uint16(b[4:]), binary.BigEndian.Uint16(b[6:]); id != 0x1234 || seq != 7 {
		t.Errorf("id/seq = %#x/%d, want 0x1234/7", id, seq)
	}
	// A packet with a correct checksum sums to zero.
	if c := icmpChecksum(b); c != 0 {
		t.Errorf("checksum over the packet = %#x, want 0", c)
	}
	if c := icmpChecksum([]byte{0x45, 0x00, 0x00, 0x73, 0x00}); c != ^uint16(0x4500+0x0073+0x0000) {
		t.Errorf("odd-length checksum = %#x", c)
	}
}

func TestTailFile(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "log")
	var b strings.Builder
	for i := range 100 {
		b.WriteString(strings.Repeat("x", i%7) + "line\n")
	}
	b.WriteString("last line\n")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got := tailFile(p, 3)
	if lines := strings.Split(got, "\n"); len(lines) != 3 || lines[2] != "last line" {
		t.Errorf("tailFile() = %q, want 3 lines ending in %q", got, "last line")
	}
	if got := tailFile(filepath.Join(t.TempDir(), "none"), 3); !strings.Contains(got, "no log") {
		t.Errorf("tailFile(missing) = %q", got)
	}
}

// testLog returns a logger writing to the test's output.
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}
