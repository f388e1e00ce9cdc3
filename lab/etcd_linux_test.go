package lab

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skeinnet/skein/store"
)

// TestEtcdClusterTLS: a lab with three etcd members and TLS runs three
// processes that form one cluster; a client with the lab's certificate
// reaches it from the root namespace and keeps working when the leader is
// killed; a killed member comes back on its data and catches up; status
// names the leader; Down stops every member.
func TestEtcdClusterTLS(t *testing.T) {
	needRoot(t)
	cfg := underlayConfig(t, "skd3", 1)
	cfg.EtcdMembers, cfg.EtcdTLS = 3, true
	l := upUnderlay(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	st := l.State()
	if len(st.Etcd) != 3 || st.TLS == nil {
		t.Fatalf("state has %d members, TLS %v; want 3 with TLS", len(st.Etcd), st.TLS)
	}
	pids := map[int]bool{}
	for _, m := range st.Etcd {
		if !procAlive(m.PID) || pids[m.PID] {
			t.Errorf("member %s: pid %d not running or shared", m.Name, m.PID)
		}
		pids[m.PID] = true
	}
	checkPKI(t, st)

	// Without the client certificate etcd refuses.
	noCert := store.Config{Endpoints: l.EtcdEndpoints(), CAFile: st.TLS.CA, DialTimeout: 2 * time.Second}
	if c, err := store.New(ctx, noCert); err == nil {
		c.Close()
		t.Error("etcd accepted a client without a certificate")
	} else if !strings.Contains(err.Error(), "certificate required") {
		t.Errorf("a client without a certificate was told %q; want it to say a certificate is required", err)
	}

	c, err := store.New(ctx, l.StoreConfig())
	if err != nil {
		t.Fatalf("connect with the lab's certificate: %v", err)
	}
	defer c.Close()
	put := func(k string) {
		t.Helper()
		pctx, pcancel := context.WithTimeout(ctx, 15*time.Second)
		defer pcancel()
		if _, err := c.Etcd().Put(pctx, c.Prefix()+"test/"+k, k); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
	put("before")

	lead, err := l.EtcdLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leaders := 0
	for i, m := range s.Etcd {
		if !m.Alive {
			t.Errorf("status: member %s not alive: %s", m.Name, m.Reason)
		}
		if m.Leader {
			leaders++
			if i+1 != lead {
				t.Errorf("status names %s leader, EtcdLeader member %d", m.Name, lead)
			}
		}
	}
	if leaders != 1 {
		t.Errorf("status shows %d leaders, want 1", leaders)
	}

	if err := l.KillEtcdMember(ctx, lead); err != nil {
		t.Fatal(err)
	}
	if procAlive(st.Etcd[lead-1].PID) {
		t.Fatalf("member %d survived KillEtcdMember", lead)
	}
	start := time.Now()
	var next int
	if err := poll(ctx, func() (bool, error) {
		next, err = l.EtcdLeader(ctx)
		return err == nil, nil
	}); err != nil {
		t.Fatalf("no new leader after killing member %d: %v", lead, err)
	}
	t.Logf("member %d killed; member %d leads after %s", lead, next, time.Since(start).Round(time.Millisecond))
	if next == lead {
		t.Fatalf("the killed member %d still leads", lead)
	}
	put("during") // two of three members: the cluster still takes writes

	if err := l.StartEtcdMember(ctx, lead); err != nil {
		t.Fatal(err)
	}
	// The restarted member caught up: a read served by it alone sees the
	// write made while it was down.
	m := l.State().Etcd[lead-1]
	one := l.StoreConfig()
	one.Endpoints = []string{m.AdminURL}
	mc, err := store.New(ctx, one)
	if err != nil {
		t.Fatalf("connect to the restarted member: %v", err)
	}
	defer mc.Close()
	if err := poll(ctx, func() (bool, error) {
		resp, err := mc.Etcd().Get(ctx, c.Prefix()+"test/during", clientv3.WithSerializable())
		return err == nil && len(resp.Kvs) == 1, nil
	}); err != nil {
		t.Errorf("restarted member %s never served the write made while it was down: %v", m.Name, err)
	}

	var all []int
	for _, m := range l.State().Etcd {
		all = append(all, m.PID)
	}
	if err := l.Down(ctx); err != nil {
		t.Fatalf("Down: %v", err)
	}
	assertGone(t, cfg.Name, cfg.RunDir, all...)
}
