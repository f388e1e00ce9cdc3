package dockerdrv

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skeinnet/skein/api"
)

const (
	testNet = "n0000000000000000000000000000000000000000000000000000000000000001"
	testEP  = "e0000000000000000000000000000000000000000000000000000000000000001"
	testCtr = "c0000000000000000000000000000000000000000000000000000000000000001"
)

type harness struct {
	t     *testing.T
	d     *Driver
	h     http.Handler
	be    *fakeBackend
	dp    *fakeDataplane
	state string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	hs := &harness{t: t, be: newFakeBackend(), dp: newFakeDataplane(), state: filepath.Join(t.TempDir(), "docker.json")}
	hs.restart()
	return hs
}

// restart makes a new driver on the same state, as a restarted skeind does.
func (hs *harness) restart() {
	hs.t.Helper()
	d, err := New(Config{Backend: hs.be, Dataplane: hs.dp, StatePath: hs.state})
	if err != nil {
		hs.t.Fatal(err)
	}
	hs.d, hs.h = d, d.Handler()
}

// call posts req to /method and decodes the answer into resp; it returns
// the status and the libnetwork error text, if any.
func (hs *harness) call(method string, req, resp any) (int, string) {
	hs.t.Helper()
	body := ""
	if req != nil {
		b, err := json.Marshal(req)
		if err != nil {
			hs.t.Fatal(err)
		}
		body = string(b)
	}
	rec := httptest.NewRecorder()
	hs.h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/"+method, strings.NewReader(body)))
	if rec.Code != http.StatusOK {
		var e errorResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Err == "" {
			hs.t.Fatalf("%s: status %d without {\"Err\"}: %s", method, rec.Code, rec.Body)
		}
		return rec.Code, e.Err
	}
	if resp != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), resp); err != nil {
			hs.t.Fatalf("%s: decode %s: %v", method, rec.Body, err)
		}
	}
	return rec.Code, ""
}

func (hs *harness) mustCall(method string, req, resp any) {
	hs.t.Helper()
	if code, msg := hs.call(method, req, resp); code != http.StatusOK {
		hs.t.Fatalf("%s: %d %s", method, code, msg)
	}
}

// attach runs libnetwork's sequence for one container up to Join.
func (hs *harness) attach(endpointID string) (netip string, join joinResponse) {
	hs.t.Helper()
	var addr requestAddressResponse
	hs.mustCall("IpamDriver.RequestAddress", requestAddressRequest{PoolID: poolID}, &addr)
	hs.mustCall("NetworkDriver.CreateEndpoint", createEndpointRequest{NetworkID: testNet, EndpointID: endpointID, Interface: &endpointInterface{Address: addr.Address}}, nil)
	hs.mustCall("NetworkDriver.Join", joinRequest{NetworkID: testNet, EndpointID: endpointID, SandboxKey: "/var/run/docker/netns/x"}, &join)
	return addr.Address, join
}

func (hs *harness) createNetwork(opts map[string]any) {
	hs.t.Helper()
	hs.mustCall("NetworkDriver.CreateNetwork", createNetworkRequest{NetworkID: testNet, Options: opts, IPv4Data: []ipamData{{Pool: poolAll, Gateway: poolAll}}}, nil)
}

func TestHandshake(t *testing.T) {
	hs := newHarness(t)
	var act activateResponse
	hs.mustCall("Plugin.Activate", nil, &act)
	if strings.Join(act.Implements, ",") != "NetworkDriver,IpamDriver" {
		t.Errorf("Implements %v", act.Implements)
	}
	var capab capabilitiesResponse
	hs.mustCall("NetworkDriver.GetCapabilities", nil, &capab)
	if capab.Scope != "local" {
		t.Errorf("scope %q, want local", capab.Scope)
	}
	var pool requestPoolResponse
	hs.mustCall("IpamDriver.RequestPool", requestPoolRequest{AddressSpace: addressSpce}, &pool)
	if pool.PoolID != poolID || pool.Pool != poolAll || pool.Data[gatewayRequest] != poolAll {
		t.Errorf("pool %+v", pool)
	}
	rec := httptest.NewRecorder()
	hs.h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/NetworkDriver.SomethingNew", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("unknown method: status %d, want 404 (libnetwork then treats it as not implemented)", rec.Code)
	}
}

// TestLifecycle: libnetwork's calls for a container's start and stop wire
// and unwire it through the agent's calls, with the CNI wiring.
func TestLifecycle(t *testing.T) {
	hs := newHarness(t)
	hs.createNetwork(map[string]any{"com.docker.network.generic": map[string]any{NamespaceLabel: "shop", "tier": "front"}})
	addr, join := hs.attach(testEP)
	if !strings.HasSuffix(addr, "/32") {
		t.Errorf("address %q: want a /32", addr)
	}
	a, _ := hs.d.st.byEndpoint(testEP)
	ep, ok := hs.be.record(a.Owner)
	if !ok {
		t.Fatal("Join committed no endpoint record")
	}
	if ep.Namespace != "shop" || ep.Labels["tier"] != "front" || ep.Network != DefaultNetwork || ep.HostIface != api.HostIfaceName(a.Owner) {
		t.Errorf("endpoint record %+v", ep)
	}
	if join.InterfaceName.SrcName == "" || join.InterfaceName.DstPrefix != "eth" || !join.DisableGatewayService {
		t.Errorf("join %+v", join)
	}
	wantRoutes := []staticRoute{{Destination: "169.254.1.1/32", RouteType: routeConnected}, {Destination: "0.0.0.0/0", RouteType: routeNextHop, NextHop: "169.254.1.1"}}
	if len(join.StaticRoutes) != 2 || join.StaticRoutes[0] != wantRoutes[0] || join.StaticRoutes[1] != wantRoutes[1] {
		t.Errorf("routes %+v, want %+v", join.StaticRoutes, wantRoutes)
	}
	if v, ok := hs.dp.veths[api.HostIfaceName(a.Owner)]; !ok || v.Peer != join.InterfaceName.SrcName || v.MTU != 1450 || len(v.IPs) != 1 || v.IPs[0] != a.IP {
		t.Errorf("veth %+v (present %v)", v, ok)
	}

	hs.mustCall("NetworkDriver.Leave", endpointRequest{NetworkID: testNet, EndpointID: testEP}, nil)
	if hs.dp.count() != 0 {
		t.Error("Leave left the veth")
	}
	hs.mustCall("NetworkDriver.DeleteEndpoint", endpointRequest{NetworkID: testNet, EndpointID: testEP}, nil)
	hs.mustCall("IpamDriver.ReleaseAddress", releaseAddressRequest{PoolID: poolID, Address: strings.TrimSuffix(addr, "/32")}, nil)
	if hs.be.heldCount() != 0 || len(hs.d.st.Attachments) != 0 {
		t.Errorf("after ReleaseAddress: agent holds %d, driver knows %d", hs.be.heldCount(), len(hs.d.st.Attachments))
	}
	if _, ok := hs.be.record(a.Owner); ok {
		t.Error("endpoint record left after ReleaseAddress")
	}
	// libnetwork may repeat a release: nothing to do, no error.
	hs.mustCall("IpamDriver.ReleaseAddress", releaseAddressRequest{PoolID: poolID, Address: addr}, nil)
}

// TestErrors: refusals come back as {"Err": reason} naming what to change.
func TestErrors(t *testing.T) {
	hs := newHarness(t)
	for _, c := range []struct {
		method string
		req    any
		want   string
	}{
		{"IpamDriver.RequestPool", requestPoolRequest{Pool: "172.30.0.0/16"}, "leave out --subnet"},
		{"IpamDriver.RequestPool", requestPoolRequest{V6: true}, "IPv6"},
		{"IpamDriver.RequestAddress", requestAddressRequest{PoolID: poolID, Address: "10.244.0.9"}, "leave out --ip"},
		{"NetworkDriver.CreateNetwork", createNetworkRequest{NetworkID: testNet, IPv4Data: []ipamData{{Pool: "172.18.0.0/16"}}}, "--ipam-driver skein"},
		{"NetworkDriver.CreateEndpoint", createEndpointRequest{NetworkID: testNet, EndpointID: testEP, Interface: &endpointInterface{Address: "172.18.0.2/16"}}, "--ipam-driver skein"},
		{"NetworkDriver.CreateEndpoint", createEndpointRequest{NetworkID: testNet, EndpointID: testEP}, "--ipam-driver skein"},
		{"NetworkDriver.Join", joinRequest{NetworkID: testNet, EndpointID: testEP}, "unknown"},
		{"IpamDriver.RequestAddress", "not an object", "decode RequestAddress request"},
	} {
		code, msg := hs.call(c.method, c.req, nil)
		if code == http.StatusOK || !strings.Contains(msg, c.want) {
			t.Errorf("%s %+v: %d %q, want an error containing %q", c.method, c.req, code, msg, c.want)
		}
	}
	hs.be.failWith = errAgent
	code, msg := hs.call("IpamDriver.RequestAddress", requestAddressRequest{PoolID: poolID}, nil)
	if code == http.StatusOK || !strings.Contains(msg, errAgent.Error()) {
		t.Errorf("agent failure: %d %q, want its reason", code, msg)
	}
}

var errAgent = &agentErr{"allocate address: pool exhausted"}

type agentErr struct{ s string }

func (e *agentErr) Error() string { return e.s }

// TestJoinCommitFailure: a Join whose commit fails leaves no veth behind.
func TestJoinCommitFailure(t *testing.T) {
	hs := newHarness(t)
	hs.createNetwork(nil)
	var addr requestAddressResponse
	hs.mustCall("IpamDriver.RequestAddress", requestAddressRequest{PoolID: poolID}, &addr)
	hs.mustCall("NetworkDriver.CreateEndpoint", createEndpointRequest{NetworkID: testNet, EndpointID: testEP, Interface: &endpointInterface{Address: addr.Address}}, nil)
	hs.be.failWith = errAgent
	if code, msg := hs.call("NetworkDriver.Join", joinRequest{NetworkID: testNet, EndpointID: testEP}, nil); code == http.StatusOK || !strings.Contains(msg, "pool exhausted") {
		t.Errorf("join: %d %q", code, msg)
	}
	if hs.dp.count() != 0 {
		t.Error("failed Join left its veth")
	}
}

// TestRestartKeepsState: a restarted driver (skeind restart) still knows
// its endpoints and releases them.
func TestRestartKeepsState(t *testing.T) {
	hs := newHarness(t)
	hs.createNetwork(nil)
	addr, _ := hs.attach(testEP)
	hs.restart()
	hs.d.CollectUnknown(context.Background())
	if hs.be.heldCount() != 1 {
		t.Fatalf("CollectUnknown freed a known attachment: agent holds %d", hs.be.heldCount())
	}
	hs.mustCall("NetworkDriver.Leave", endpointRequest{NetworkID: testNet, EndpointID: testEP}, nil)
	hs.mustCall("NetworkDriver.DeleteEndpoint", endpointRequest{NetworkID: testNet, EndpointID: testEP}, nil)
	hs.mustCall("IpamDriver.ReleaseAddress", releaseAddressRequest{PoolID: poolID, Address: addr}, nil)
	if hs.be.heldCount() != 0 || hs.dp.count() != 0 {
		t.Errorf("after restart and release: agent holds %d, veths %d", hs.be.heldCount(), hs.dp.count())
	}
}

// TestCollectUnknown: an address the agent holds for the Docker network
// that the state does not know (skeind stopped between allocating and
// saving) is freed at start.
func TestCollectUnknown(t *testing.T) {
	hs := newHarness(t)
	if _, err := hs.be.Allocate(context.Background(), api.AllocateRequest{Owner: api.Owner{ContainerID: "docker-lost", IfName: ifName}, Network: DefaultNetwork}); err != nil {
		t.Fatal(err)
	}
	hs.createNetwork(nil)
	hs.attach(testEP)
	hs.d.CollectUnknown(context.Background())
	if hs.be.heldCount() != 1 {
		t.Errorf("agent holds %d addresses, want the known one only", hs.be.heldCount())
	}
}

// TestResolve: after Join, the endpoint is named after its container, gets
// its labels and namespace, and the container's gateway neighbour is set.
func TestResolve(t *testing.T) {
	hs := newHarness(t)
	eng := newFakeEngine()
	hs.d.engine = eng
	hs.createNetwork(nil)
	ctx := context.Background()
	if n := hs.d.resolveAll(ctx); n != 1 {
		t.Errorf("network the engine does not show yet: pending %d, want 1", n)
	}
	// The network's labels, read as soon as the engine shows it, start
	// the first Join.
	eng.networks[testNet] = engineNetwork{ID: testNet, Labels: map[string]string{NamespaceLabel: "shop"}}
	if n := hs.d.resolveAll(ctx); n != 0 {
		t.Errorf("pending %d after the network resolved", n)
	}
	hs.attach(testEP)
	a, _ := hs.d.st.byEndpoint(testEP)
	if ep, _ := hs.be.record(a.Owner); ep.Namespace != "shop" || ep.Name != "ep-"+short(testEP) {
		t.Errorf("first commit: %+v, want namespace shop from the network's label", ep)
	}

	if n := hs.d.resolveAll(ctx); n != 1 { // the engine does not list the endpoint yet
		t.Errorf("pending %d, want 1", n)
	}
	a.Joined = time.Now().Add(-2 * resolveFast)
	if n := hs.d.resolveAll(ctx); n != 0 {
		t.Errorf("an endpoint unnamed for long still pending (%d): looked up at the fast pace forever", n)
	}
	eng.networks[testNet] = engineNetwork{ID: testNet, Labels: map[string]string{"zone": "a"},
		Containers: map[string]engineEndpoint{testCtr: {EndpointID: testEP, Name: "web"}}}
	eng.containers[testCtr] = engineContainer{ID: testCtr, Names: []string{"/web"}, Labels: map[string]string{"app": "web", NamespaceLabel: "shop", "bad label!": "x"}}
	eng.pids[testCtr] = 4242
	if n := hs.d.resolveAll(ctx); n != 0 {
		t.Errorf("pending %d after resolution", n)
	}
	ep, _ := hs.be.record(a.Owner)
	if ep.Name != "web" || ep.Namespace != "shop" || ep.Labels["app"] != "web" || ep.Labels["zone"] != "a" || ep.Labels[ContainerLabel] != short(testCtr) {
		t.Errorf("after resolution: %+v", ep)
	}
	if _, ok := ep.Labels["bad label!"]; ok {
		t.Error("an invalid label key reached the endpoint record")
	}
	if got := hs.dp.neighs[a.HostIface]; got != "/proc/4242/ns/net" {
		t.Errorf("gateway neighbour set in %q", got)
	}
	commits := hs.be.commits
	hs.d.resolveAll(ctx)
	if hs.be.commits != commits {
		t.Error("a resolved endpoint was committed again")
	}
	// The network's labels, learnt from the engine, start the next Join.
	hs.attach("e2")
	a2, _ := hs.d.st.byEndpoint("e2")
	if ep2, _ := hs.be.record(a2.Owner); ep2.Labels["zone"] != "a" {
		t.Errorf("second endpoint lacks the network's labels: %+v", ep2)
	}
}

// TestReconcile: an endpoint dockerd no longer lists is freed after two
// passes; one still listed, a young one, or any while the engine is
// unreachable, never.
func TestReconcile(t *testing.T) {
	hs := newHarness(t)
	eng := newFakeEngine()
	hs.d.engine = eng
	hs.createNetwork(nil)
	hs.attach(testEP)
	hs.attach("e2")
	eng.networks[testNet] = engineNetwork{ID: testNet, Containers: map[string]engineEndpoint{testCtr: {EndpointID: "e2"}}}
	ctx := context.Background()

	hs.d.reconcile(ctx)
	hs.d.reconcile(ctx)
	if len(hs.d.st.Attachments) != 2 {
		t.Fatalf("young attachments freed: %d left", len(hs.d.st.Attachments))
	}
	for _, a := range hs.d.st.Attachments {
		a.Allocated = time.Now().Add(-2 * staleAfter)
	}
	eng.down = true
	hs.d.reconcile(ctx)
	hs.d.reconcile(ctx)
	if len(hs.d.st.Attachments) != 2 {
		t.Fatalf("engine unreachable, yet %d of 2 attachments left", len(hs.d.st.Attachments))
	}
	eng.down = false
	hs.d.reconcile(ctx)
	if len(hs.d.st.Attachments) != 2 {
		t.Fatal("freed after one pass")
	}
	hs.d.reconcile(ctx)
	if _, ok := hs.d.st.byEndpoint(testEP); ok || len(hs.d.st.Attachments) != 1 {
		t.Errorf("gone endpoint kept or listed one freed: %d left", len(hs.d.st.Attachments))
	}
	if hs.be.heldCount() != 1 || hs.dp.count() != 1 {
		t.Errorf("agent holds %d, veths %d; want 1 and 1", hs.be.heldCount(), hs.dp.count())
	}
	// The network deleted from dockerd: its last endpoint goes too.
	delete(eng.networks, testNet)
	hs.d.reconcile(ctx)
	hs.d.reconcile(ctx)
	if len(hs.d.st.Attachments) != 0 || len(hs.d.st.Networks) != 0 {
		t.Errorf("after the network went: %d attachments, %d networks", len(hs.d.st.Attachments), len(hs.d.st.Networks))
	}
}

func TestPodOf(t *testing.T) {
	for _, c := range []struct {
		name     string
		c        containerInfo
		wantNS   string
		wantName string
		wantSkip []string
	}{
		{"unnamed", containerInfo{}, "default", "ep-" + short(testEP), nil},
		{"network namespace", containerInfo{NetworkLabels: map[string]string{NamespaceLabel: "prod"}}, "prod", "ep-" + short(testEP), nil},
		{"container wins", containerInfo{ID: testCtr, Name: "/db", NetworkLabels: map[string]string{NamespaceLabel: "prod"}, Labels: map[string]string{NamespaceLabel: "dev"}}, "dev", "db", nil},
		{"bad namespace", containerInfo{Labels: map[string]string{NamespaceLabel: "Not_DNS"}}, "default", "ep-" + short(testEP), []string{NamespaceLabel}},
		{"bad label", containerInfo{Labels: map[string]string{"com.example/a/b": "x", "ok": "a value with spaces"}}, "default", "ep-" + short(testEP), []string{"com.example/a/b", "ok"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			pod, skipped := podOf(testEP, c.c)
			if pod.Namespace != c.wantNS || pod.Name != c.wantName || strings.Join(skipped, ",") != strings.Join(c.wantSkip, ",") {
				t.Errorf("podOf = %+v skipped %v; want %s/%s skipped %v", pod, skipped, c.wantNS, c.wantName, c.wantSkip)
			}
			if _, ok := pod.Labels[NamespaceLabel]; ok {
				t.Error("the namespace label stays a label")
			}
		})
	}
}
