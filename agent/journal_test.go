package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skeinnet/skein/api"
)

func TestJournalPersistsInOrder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	j, err := openJournal(dir, "n1")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ep := func(id string) api.Endpoint {
		return api.Endpoint{Node: "n1", ContainerID: id, IfName: "eth0", Network: "net-a", Namespace: "default"}
	}
	for i, id := range []string{"a", "b", "a"} {
		op := opPublish
		if i == 2 {
			op = opUnpublish
		}
		if err := j.add(op, ep(id), now.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.done(2, nil); err != nil { // b landed
		t.Fatal(err)
	}
	again, err := openJournal(dir, "n1")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range again.entries {
		got = append(got, string(e.Op)+" "+e.Endpoint.ContainerID)
	}
	if strings.Join(got, ", ") != "publish a, unpublish a" {
		t.Errorf("journal after restart = %v, want [publish a, unpublish a]", got)
	}
	if st := again.stats(); st.Unpublished != 2 || !st.Oldest.Equal(now) {
		t.Errorf("stats = %+v, want 2 entries, oldest %s", st, now)
	}
	if err := again.add(opPublish, ep("c"), now); err != nil || again.entries[2].Seq != 4 {
		t.Errorf("seq after restart = %d (%v), want 4: sequence numbers never repeat", again.entries[2].Seq, err)
	}
	if cancelled, err := again.cancelUnpublish("net-b", api.Owner{ContainerID: "a", IfName: "eth0"}); err != nil || cancelled {
		t.Errorf("cancelUnpublish(net-b, a) = %t, %v; want false: the unpublish is net-a's", cancelled, err)
	}
	if cancelled, err := again.cancelUnpublish("net-a", api.Owner{ContainerID: "a", IfName: "eth0"}); err != nil || !cancelled {
		t.Errorf("cancelUnpublish(a) = %t, %v; want true", cancelled, err)
	}
	if again.pending(opUnpublish, api.Owner{ContainerID: "a", IfName: "eth0"}) {
		t.Error("unpublish of a still pending after cancel")
	}
}

func TestJournalCorrupt(t *testing.T) {
	t.Parallel()
	for name, content := range map[string]string{
		"not json":   `{"version":1,`,
		"other node": `{"version":1,"node":"n2","entries":[]}`,
		"version":    `{"version":9,"node":"n1","entries":[]}`,
		"seq order":  `{"version":1,"node":"n1","entries":[{"seq":2,"op":"publish","endpoint":{"node":"n1","containerID":"a","ifName":"eth0","network":"x"}},{"seq":1,"op":"publish","endpoint":{"node":"n1","containerID":"b","ifName":"eth0","network":"x"}}]}`,
		"unknown op": `{"version":1,"node":"n1","entries":[{"seq":1,"op":"drop","endpoint":{"node":"n1","containerID":"a","ifName":"eth0","network":"x"}}]}`,
		"no network": `{"version":1,"node":"n1","entries":[{"seq":1,"op":"publish","endpoint":{"node":"n1","containerID":"a","ifName":"eth0"}}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, JournalFileName), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := openJournal(dir, "n1")
			if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, JournalFileName)) {
				t.Errorf("openJournal() = %v, want an error naming the file", err)
			}
		})
	}
}
