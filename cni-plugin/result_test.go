package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/netip"
	"testing"

	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/go-cmp/cmp"

	"github.com/skeinnet/skein/api"
)

var testOwner = api.Owner{ContainerID: "c0ffee", IfName: "eth0"}

func testWiring(t *testing.T) wiring {
	t.Helper()
	w, err := planWiring(testOwner, "/run/netns/c1", api.AllocateResponse{
		IPs: []netip.Prefix{netip.MustParsePrefix("198.18.0.5/32")}, Gateway: netip.MustParseAddr("169.254.1.1"), MTU: 1450,
	})
	if err != nil {
		t.Fatalf("planWiring() error = %v", err)
	}
	return w
}

func TestPrintResultVersions(t *testing.T) {
	t.Parallel()
	w := testWiring(t)
	mac := w.HostMAC.String()
	host := api.HostIfaceName(testOwner)
	pl := plumbed{ContainerMAC: net.HardwareAddr{0x0a, 0, 0, 0, 0, 1}, MTU: 1450}
	res100 := `{
		"interfaces":[{"name":"` + host + `","mac":"` + mac + `"},
		              {"name":"eth0","mac":"0a:00:00:00:00:01","mtu":1450,"sandbox":"/run/netns/c1"}],
		"ips":[{"interface":1,"address":"198.18.0.5/32","gateway":"169.254.1.1"}],
		"routes":[{"dst":"0.0.0.0/0","gw":"169.254.1.1"}]}`
	res040 := `{
		"interfaces":[{"name":"` + host + `","mac":"` + mac + `"},
		              {"name":"eth0","mac":"0a:00:00:00:00:01","sandbox":"/run/netns/c1"}],
		"ips":[{"version":"4","interface":1,"address":"198.18.0.5/32","gateway":"169.254.1.1"}],
		"routes":[{"dst":"0.0.0.0/0","gw":"169.254.1.1"}],
		"dns":{}}`
	res020 := `{
		"ip4":{"ip":"198.18.0.5/32","gateway":"169.254.1.1","routes":[{"dst":"0.0.0.0/0","gw":"169.254.1.1"}]},
		"dns":{}}`
	tests := []struct {
		version string
		want    string
	}{
		{"1.1.0", res100},
		{"1.0.0", res100},
		{"0.4.0", res040},
		{"0.3.1", res040},
		{"0.3.0", res040},
		{"0.2.0", res020},
		{"0.1.0", res020},
	}
	for _, tc := range tests {
		t.Run(tc.version, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			if err := printResult(&buf, buildResult(w, "eth0", pl, nil), tc.version); err != nil {
				t.Fatalf("printResult() error = %v", err)
			}
			var got, want map[string]any
			if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, buf.String())
			}
			if err := json.Unmarshal([]byte(tc.want), &want); err != nil {
				t.Fatalf("bad test JSON: %v", err)
			}
			want["cniVersion"] = tc.version
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("result %s mismatch (-want +got):\n%s", tc.version, d)
			}
		})
	}
}

func TestBuildResultAppendsToPrevResult(t *testing.T) {
	t.Parallel()
	w := testWiring(t)
	prev := &types100.Result{
		CNIVersion: "1.1.0",
		Interfaces: []*types100.Interface{{Name: "lo0"}},
		IPs:        []*types100.IPConfig{{Interface: types100.Int(0), Address: prefixIPNet(netip.MustParsePrefix("192.0.2.1/24"))}},
	}
	res := buildResult(w, "eth0", plumbed{}, prev)
	if len(res.Interfaces) != 3 || res.Interfaces[2].Name != "eth0" {
		t.Fatalf("interfaces = %v, want lo0, host veth, eth0", res.Interfaces)
	}
	if got := *res.IPs[1].Interface; got != 2 {
		t.Errorf("our IP's interface index = %d, want 2", got)
	}
}

func TestPlanWiring(t *testing.T) {
	t.Parallel()
	gw := netip.MustParseAddr(api.GatewayIP)
	tests := []struct {
		name    string
		alloc   api.AllocateResponse
		want    wiring
		wantErr bool
	}{
		{
			name:  "gateway defaulted, prefix length ignored",
			alloc: api.AllocateResponse{IPs: []netip.Prefix{netip.MustParsePrefix("198.18.0.7/26")}},
			want: wiring{Owner: testOwner, Netns: "/ns", HostIface: api.HostIfaceName(testOwner), HostMAC: hostMAC(testOwner),
				CtrMAC: containerMAC(testOwner), IPs: []netip.Addr{netip.MustParseAddr("198.18.0.7")}, Gateway: gw},
		},
		{name: "no address", alloc: api.AllocateResponse{MTU: 1500}, wantErr: true},
		{
			name:  "IPv6 only: no IPv4 gateway, even one the agent sent; fe80::1 defaulted",
			alloc: api.AllocateResponse{IPs: []netip.Prefix{netip.MustParsePrefix("fd00::5/128")}, Gateway: gw},
			want: wiring{Owner: testOwner, Netns: "/ns", HostIface: api.HostIfaceName(testOwner), HostMAC: hostMAC(testOwner),
				CtrMAC: containerMAC(testOwner), IPs: []netip.Addr{netip.MustParseAddr("fd00::5")}, Gateway6: netip.MustParseAddr(api.GatewayIPv6)},
		},
		{name: "two IPv6", alloc: api.AllocateResponse{IPs: []netip.Prefix{netip.MustParsePrefix("fd00::5/128"), netip.MustParsePrefix("fd00::6/128")}}, wantErr: true},
		{name: "two IPv4", alloc: api.AllocateResponse{IPs: []netip.Prefix{netip.MustParsePrefix("198.18.0.7/32"), netip.MustParsePrefix("198.18.0.8/32")}}, wantErr: true},
		{name: "IPv6 gateway", alloc: api.AllocateResponse{IPs: []netip.Prefix{netip.MustParsePrefix("198.18.0.7/32")}, Gateway: netip.MustParseAddr("fe80::1")}, wantErr: true},
		{name: "MTU too small", alloc: api.AllocateResponse{IPs: []netip.Prefix{netip.MustParsePrefix("198.18.0.7/32")}, MTU: 40}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := planWiring(testOwner, "/ns", tc.alloc)
			if (err != nil) != tc.wantErr {
				t.Fatalf("planWiring() error = %v, wantErr %v", err, tc.wantErr)
			}
			if d := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); !tc.wantErr && d != "" {
				t.Errorf("planWiring() mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestOwnerMACs(t *testing.T) {
	t.Parallel()
	other := api.Owner{ContainerID: "c0ffee", IfName: "eth1"}
	macs := []net.HardwareAddr{hostMAC(testOwner), containerMAC(testOwner), hostMAC(other), containerMAC(other)}
	seen := map[string]bool{}
	for _, m := range macs {
		if seen[m.String()] {
			t.Errorf("MAC %s derived twice from different inputs", m)
		}
		seen[m.String()] = true
		if m[0]&0x01 != 0 || m[0]&0x02 == 0 {
			t.Errorf("MAC %s is not a locally administered unicast address", m)
		}
	}
	if hostMAC(testOwner).String() != macs[0].String() {
		t.Errorf("hostMAC not deterministic")
	}
}

func TestWiringFromResult(t *testing.T) {
	t.Parallel()
	w := testWiring(t)
	for _, v := range []string{"1.1.0", "0.4.0"} {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			if err := printResult(&buf, buildResult(w, "eth0", plumbed{MTU: 1450}, nil), v); err != nil {
				t.Fatal(err)
			}
			conf, err := loadConf([]byte(`{"cniVersion":"` + v + `","name":"skein","prevResult":` + buf.String() + `}`))
			if err != nil {
				t.Fatal(err)
			}
			prev, err := prevResult(conf)
			if err != nil {
				t.Fatalf("prevResult() error = %v", err)
			}
			got, err := wiringFromResult(testOwner, "/run/netns/c1", prev)
			if err != nil {
				t.Fatalf("wiringFromResult() error = %v", err)
			}
			want := w
			if v == "0.4.0" {
				want.MTU = 0 // 0.4.0 results carry no MTU
			}
			if d := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
				t.Errorf("wiringFromResult() mismatch (-want +got):\n%s", d)
			}
			if _, err := wiringFromResult(testOwner, "/run/netns/other", prev); err == nil {
				t.Errorf("wiringFromResult() with another sandbox succeeded, want error")
			}
		})
	}
}

func TestPrevResultAbsent(t *testing.T) {
	t.Parallel()
	conf, err := loadConf([]byte(`{"cniVersion":"1.1.0","name":"skein"}`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := prevResult(conf)
	if got != nil || err != nil {
		t.Errorf("prevResult() = %v, %v; want nil, nil", got, err)
	}
}

func TestCheckWiring(t *testing.T) {
	t.Parallel()
	w := testWiring(t)
	hostMACs := w.HostMAC
	intact := func() observed {
		return observed{
			Container: &linkState{
				Name: "eth0", Veth: true, Up: true, MTU: 1450,
				Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.0.5/32")},
				Routes: []route{
					{Dst: netip.MustParsePrefix("169.254.1.1/32")},
					{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("169.254.1.1")},
					{Dst: netip.MustParsePrefix("10.96.0.0/12"), Gw: netip.MustParseAddr("169.254.1.1")}, // a chained plugin's
				},
				Neighs: map[netip.Addr]net.HardwareAddr{netip.MustParseAddr("169.254.1.1"): hostMACs},
			},
			Host: &linkState{
				Name: w.HostIface, Veth: true, Up: true, MAC: hostMACs,
				Routes: []route{{Dst: netip.MustParsePrefix("198.18.0.5/32")}},
			},
		}
	}
	tests := []struct {
		name   string
		mutate func(o *observed)
		want   []string
	}{
		{name: "intact", mutate: func(*observed) {}},
		{name: "container iface gone", mutate: func(o *observed) { o.Container = nil },
			want: []string{"interface eth0 missing in netns /run/netns/c1"}},
		{name: "host veth gone", mutate: func(o *observed) { o.Host = nil },
			want: []string{"host veth " + w.HostIface + " missing"}},
		{name: "address and default route gone", mutate: func(o *observed) {
			o.Container.Addrs = nil
			o.Container.Routes = o.Container.Routes[:1]
		}, want: []string{
			"interface eth0 lacks address 198.18.0.5/32",
			"netns /run/netns/c1 lacks route 0.0.0.0/0 via 169.254.1.1 dev eth0",
		}},
		{name: "down, wrong MTU, no neighbour", mutate: func(o *observed) {
			o.Container.Up = false
			o.Container.MTU = 1500
			o.Container.Neighs = nil
		}, want: []string{
			"interface eth0 is down",
			"interface eth0 has MTU 1500, want 1450",
			"netns /run/netns/c1 lacks permanent neighbour 169.254.1.1 lladdr " + hostMACs.String() + " dev eth0",
		}},
		{name: "host route gone", mutate: func(o *observed) { o.Host.Routes = nil },
			want: []string{"host lacks route 198.18.0.5/32 scope link dev " + w.HostIface}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := intact()
			tc.mutate(&o)
			if d := cmp.Diff(tc.want, checkWiring(w, "eth0", o)); d != "" {
				t.Errorf("checkWiring() mismatch (-want +got):\n%s", d)
			}
		})
	}
}
