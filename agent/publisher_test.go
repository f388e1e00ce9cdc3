package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/skeinnet/skein/api"
)

// The publisher notices by itself (a probe with backoff, no kick) that etcd
// is back, replays the journal in order, and releases an unpublished
// attachment only after its delete landed.
func TestPublisherDrainsWhenEtcdReturns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		eps := &memEndpoints{eps: map[api.Owner]api.Endpoint{}, nss: map[string]api.Namespace{}}
		gone := api.Owner{ContainerID: "gone", IfName: "eth0"}
		eps.eps[gone] = api.Endpoint{Node: "n1", ContainerID: "gone", IfName: "eth0"}
		eps.setFail(fmt.Errorf("put: %w", context.DeadlineExceeded))
		j, err := openJournal(t.TempDir(), "n1")
		if err != nil {
			t.Fatal(err)
		}
		health := &etcdHealth{}
		health.observe(fmt.Errorf("x: %w", context.DeadlineExceeded), time.Now())
		ep := api.Endpoint{Node: "n1", ContainerID: "new", IfName: "eth0", Network: "net-a", Namespace: "ns1"}
		if err := j.add(opPublish, ep, time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := j.add(opUnpublish, api.Endpoint{Node: "n1", ContainerID: "gone", IfName: "eth0", Network: "net-a"}, time.Now()); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var events []string
		record := func(s string) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, s)
		}
		p := &publisher{
			j: j, store: eps, health: health,
			probe:     func(context.Context) error { return eps.failure() },
			published: func(ep api.Endpoint) { record("published " + ep.ContainerID) },
			release: func(network string, o api.Owner) {
				if _, still := eps.get(o); still {
					t.Errorf("release of %s while its endpoint is still in the store", o)
				}
				record("released " + network + " " + o.ContainerID)
			},
			changed: func() { _ = j.stats() },
			log:     slog.New(slog.NewTextHandler(t.Output(), nil)),
			kick:    make(chan struct{}, 1),
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = p.Run(ctx) // returns nil on cancel
		}()
		time.Sleep(20 * time.Second) // an outage: retries back off, nothing lands
		synctest.Wait()
		if got := j.stats().Unpublished; got != 2 || health.reachable() {
			t.Fatalf("during the outage: %d entries, reachable %t; want 2 and false", got, health.reachable())
		}
		eps.setFail(nil)
		time.Sleep(publishRetryMax + time.Second) // at most one backoff step later
		synctest.Wait()
		if !j.empty() || !health.reachable() {
			t.Errorf("after etcd returned: journal %+v, etcd %+v; want drained and reachable", j.stats(), health.state())
		}
		mu.Lock()
		got := fmt.Sprint(events)
		mu.Unlock()
		if want := "[published new released net-a gone]"; got != want {
			t.Errorf("events = %s, want %s (in journal order)", got, want)
		}
		if ep, ok := eps.get(api.Owner{ContainerID: "new", IfName: "eth0"}); !ok || ep.Network != "net-a" {
			t.Errorf("journaled endpoint not in the store: %+v", ep)
		}
		if _, ok := eps.nss["ns1"]; !ok {
			t.Error("namespace of the journaled endpoint not ensured")
		}
		cancel()
		<-done
	})
}
