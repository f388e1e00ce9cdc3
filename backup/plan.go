package backup

import (
	"fmt"
	"slices"
	"strings"

	"github.com/skeinnet/skein/audit"
)

// Action is what a restore does to one key.
type Action string

// The actions of a restore.
const (
	Create Action = "create"
	Update Action = "update"
	Delete Action = "delete"
)

// Change is one key a restore writes.
type Change struct {
	Action Action `json:"action"`
	Key    string `json:"key"`
	// Diff lists the changed fields (audit.Diff) for an update.
	Diff []string `json:"diff,omitempty"`
	// LiveNode names the node whose agent is alive when the change
	// overwrites or deletes its node record.
	LiveNode string `json:"liveNode,omitempty"`
	value    []byte // nil for a delete
}

// Value returns what the change writes (nil for a delete).
func (c Change) Value() []byte { return c.value }

// Plan returns the changes that make current (keys without prefix, as a
// store holds them) equal f, sorted by key. Heartbeats and status records
// are never touched, and audit records newer than the backup are kept:
// a restore does not erase the trail. alive names the nodes whose agent
// is alive.
func Plan(f File, current map[string][]byte, alive map[string]bool) []Change {
	var out []Change
	want := make(map[string]bool, len(f.Keys))
	for _, kv := range f.Keys {
		want[kv.Key] = true
		have, ok := current[kv.Key]
		switch {
		case !ok:
			out = append(out, Change{Action: Create, Key: kv.Key, value: []byte(kv.Value)})
		case string(have) != kv.Value:
			c := Change{Action: Update, Key: kv.Key, Diff: audit.Diff(have, []byte(kv.Value)), value: []byte(kv.Value)}
			c.LiveNode = liveNode(kv.Key, alive)
			out = append(out, c)
		}
	}
	for k := range current {
		if want[k] || Skipped(k) || strings.HasPrefix(k, audit.LogPrefix) {
			continue
		}
		out = append(out, Change{Action: Delete, Key: k, LiveNode: liveNode(k, alive)})
	}
	slices.SortFunc(out, func(a, b Change) int { return strings.Compare(a.Key, b.Key) })
	return out
}

func liveNode(key string, alive map[string]bool) string {
	if n, ok := strings.CutPrefix(key, "nodes/"); ok && alive[n] {
		return n
	}
	return ""
}

// ErrLiveNodes is returned when a restore would overwrite live nodes.
var ErrLiveNodes = fmt.Errorf("the restore would overwrite the records of nodes whose agents are running (--force does it anyway)")

// CheckLive returns ErrLiveNodes naming the live nodes cs touches, unless force.
func CheckLive(cs []Change, force bool) error {
	var live []string
	for _, c := range cs {
		if c.LiveNode != "" {
			live = append(live, c.LiveNode)
		}
	}
	if len(live) == 0 || force {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrLiveNodes, strings.Join(live, ", "))
}

// Summary counts the changes by action, "2 to create, 1 to update, 0 to delete".
func Summary(cs []Change) string {
	n := map[Action]int{}
	for _, c := range cs {
		n[c.Action]++
	}
	return fmt.Sprintf("%d to create, %d to update, %d to delete", n[Create], n[Update], n[Delete])
}
