package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/dockerdrv"
)

// nopVeths is the Docker driver's dataplane without a kernel.
type nopVeths struct{ live map[string]bool }

func (n *nopVeths) AddVeth(_ context.Context, v dockerdrv.Veth) error {
	n.live[v.HostIface] = true
	return nil
}

func (n *nopVeths) DelVeth(_ context.Context, name string) error {
	delete(n.live, name)
	return nil
}

func (n *nopVeths) SetGatewayNeigh(context.Context, string, string, bool) error { return nil }

// TestDockerBackend: the Docker driver allocates, publishes and releases
// through the CNI API's own calls: the same allocator, the same endpoint
// records, the same refusals, and a CNI GC of another network leaves
// Docker attachments alone.
func TestDockerBackend(t *testing.T) {
	f := newFixture(t)
	drv, err := dockerdrv.New(dockerdrv.Config{
		Backend:   dockerBackend{s: f.cni},
		Dataplane: &nopVeths{live: map[string]bool{}},
		StatePath: filepath.Join(t.TempDir(), "docker.json"),
	})
	if err != nil {
		t.Fatal(err)
	}
	h := drv.Handler()
	call := func(method, body string, resp any) string {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/"+method, strings.NewReader(body)))
		if rec.Code != http.StatusOK {
			var e struct{ Err string }
			_ = json.Unmarshal(rec.Body.Bytes(), &e) // an empty Err fails the caller's check
			return e.Err
		}
		if resp != nil {
			if err := json.Unmarshal(rec.Body.Bytes(), resp); err != nil {
				t.Fatal(err)
			}
		}
		return ""
	}
	must := func(method, body string, resp any) {
		t.Helper()
		if e := call(method, body, resp); e != "" {
			t.Fatalf("%s: %s", method, e)
		}
	}
	must("NetworkDriver.CreateNetwork", `{"NetworkID":"n1","IPv4Data":[{"Pool":"0.0.0.0/0"}],"Options":{"com.docker.network.generic":{"skein.dev/namespace":"shop"}}}`, nil)
	var addr struct{ Address string }
	must("IpamDriver.RequestAddress", `{"PoolID":"skein"}`, &addr)
	must("NetworkDriver.CreateEndpoint", `{"NetworkID":"n1","EndpointID":"e1","Interface":{"Address":"`+addr.Address+`"}}`, nil)
	must("NetworkDriver.Join", `{"NetworkID":"n1","EndpointID":"e1","SandboxKey":"/x"}`, nil)

	ip := netip.MustParsePrefix(addr.Address).Addr()
	var docker api.Endpoint
	for _, al := range f.alloc.Allocations() {
		if al.IP == ip {
			if al.Network != dockerdrv.DefaultNetwork {
				t.Errorf("allocation %+v: want network %q", al, dockerdrv.DefaultNetwork)
			}
			ep, ok := f.eps.get(al.Owner)
			if !ok {
				t.Fatalf("no endpoint record for %s", al.Owner)
			}
			docker = ep
		}
	}
	if docker.Namespace != "shop" || docker.Network != dockerdrv.DefaultNetwork || len(docker.IPs) != 1 || docker.IPs[0] != ip {
		t.Fatalf("endpoint record %+v", docker)
	}

	// A CNI GC of another network does not see the Docker attachment.
	var gc api.GCResponse
	if code, ae := f.call(t, api.PathGC, api.GCRequest{Network: testNet}, &gc); code != http.StatusOK || len(gc.Freed) != 0 {
		t.Fatalf("gc of %s: %d %+v freed %v", testNet, code, ae, gc.Freed)
	}

	// The pool (three addresses) runs out: the agent's reason reaches docker.
	must("IpamDriver.RequestAddress", `{"PoolID":"skein"}`, nil)
	must("IpamDriver.RequestAddress", `{"PoolID":"skein"}`, nil)
	if e := call("IpamDriver.RequestAddress", `{"PoolID":"skein"}`, nil); !strings.Contains(e, "allocate address") {
		t.Errorf("exhausted pool: Err %q, want the agent's reason", e)
	}

	must("NetworkDriver.Leave", `{"NetworkID":"n1","EndpointID":"e1"}`, nil)
	must("NetworkDriver.DeleteEndpoint", `{"NetworkID":"n1","EndpointID":"e1"}`, nil)
	must("IpamDriver.ReleaseAddress", `{"PoolID":"skein","Address":"`+ip.String()+`"}`, nil)
	owner := api.Owner{ContainerID: docker.ContainerID, IfName: docker.IfName}
	if _, ok := f.eps.get(owner); ok {
		t.Error("endpoint record left after ReleaseAddress")
	}
	if held, _ := f.alloc.Held(dockerdrv.DefaultNetwork, owner); len(held) != 0 {
		t.Errorf("address still held after ReleaseAddress: %v", held)
	}
}
