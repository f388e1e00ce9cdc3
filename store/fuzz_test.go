package store

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skeinnet/skein/api"
)

// fuzzKeys are one key per kind of value the watch decodes.
var fuzzKeys = []string{
	"/skein/cluster",
	"/skein/nodes/n1",
	"/skein/blocks/10.244.0.0-26",
	"/skein/endpoints/n1/c1/eth0",
	"/skein/namespaces/x",
	"/skein/bgppeers/tor",
}

// FuzzStoreValue: no stored value crashes the watch's decoders; a value
// that does not decode is reported in Snapshot.Errors under its key (and
// left out); one that decodes, encoded again by Skein, decodes to the
// same snapshot.
func FuzzStoreValue(f *testing.F) {
	f.Add(uint8(0), []byte(`{"pools":[{"cidr":"10.244.0.0/16","blockSize":26}],"backend":"vxlan","vxlan":{"vni":4096,"port":4789}}`))
	f.Add(uint8(1), []byte(`{"name":"n1","underlayIP":"10.0.0.1","vtepMAC":"02:00:00:00:00:01","labels":{"a":"b"}}`))
	f.Add(uint8(2), []byte(`{"node":"n1"}`))
	f.Add(uint8(2), []byte(`{"node":"n1","node":"n2"}`))
	f.Add(uint8(3), []byte(`{"namespace":"x","name":"a","labels":{"app":"web"},"ips":["10.244.0.1"],"node":"n1","containerID":"c1","ifName":"eth0","hostIface":"sk0123456789a"}`))
	f.Add(uint8(4), []byte(`{"name":"x","labels":{"ns":"x"}}`))
	f.Add(uint8(5), []byte(`{"name":"tor","peerIP":"10.0.0.254","asn":65000}`))
	f.Fuzz(func(t *testing.T, k uint8, value []byte) {
		key := fuzzKeys[int(k)%len(fuzzKeys)]
		s := newState("/skein/")
		s.apply(key, value)
		snap := s.snapshot()
		if len(snap.Errors) > 0 {
			if len(snap.Errors) != 1 || !strings.HasPrefix(snap.Errors[0], key+": ") || len(snap.Errors[0]) == len(key)+2 {
				t.Fatalf("errors %q: want one naming %s with a reason", snap.Errors, key)
			}
			if decoded(snap) {
				t.Fatalf("value reported undecodable but kept: %+v", snap)
			}
			return
		}
		var v any
		rest := strings.TrimPrefix(key, "/skein/")
		switch kind, name, _ := strings.Cut(rest, "/"); kind {
		case kindCluster:
			v = snap.Cluster
		case kindNodes:
			v = snap.Nodes[name]
		case kindBlocks:
			for _, b := range snap.Blocks {
				v = b
			}
		case kindEndpoints:
			v = snap.Endpoints[name]
		case kindNamespaces:
			v = snap.Namespaces[name]
		default:
			// Kept raw in Other; agents decode peers with api.DecodeBGPPeer.
			p, err := api.DecodeBGPPeer(value)
			if err != nil {
				if err.Error() == "" {
					t.Fatal("empty error")
				}
				return
			}
			again, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			p2, err := api.DecodeBGPPeer(again)
			if err != nil || !reflect.DeepEqual(p, p2) {
				t.Fatalf("bgp peer round trip: %+v, then %+v, %v", p, p2, err)
			}
			return
		}
		again, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("encode %s: %v", key, err)
		}
		s2 := newState("/skein/")
		s2.apply(key, again)
		// As JSON: net/netip values have no exported fields to diff.
		first, err := json.Marshal(snap)
		if err != nil {
			t.Fatal(err)
		}
		second, err := json.Marshal(s2.snapshot())
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(string(first), string(second)); d != "" {
			t.Fatalf("%s: decode, encode, decode changed the snapshot (-first +second):\n%s\nencoded: %s", key, d, again)
		}
	})
}

// decoded reports whether snap holds any typed value.
func decoded(snap Snapshot) bool {
	return snap.Cluster != nil || len(snap.Nodes)+len(snap.Blocks)+len(snap.Endpoints)+len(snap.Namespaces) > 0
}
