package namedns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

func TestNamedNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	ctx := context.Background()
	b := make([]byte, 4)
	_, _ = rand.Read(b) // crypto/rand never fails
	name := "sknd-" + hex.EncodeToString(b)
	if err := Add(ctx, name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := Delete(context.Background(), name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if names, err := List(); err != nil || !slices.Contains(names, name) {
		t.Fatalf("List() = %v, %v; want it to hold %s", names, err, name)
	}

	// Do runs inside the namespace and leaves the caller where it was.
	outside, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer outside.Close()
	var inside netns.NsHandle
	if err := Do(name, func() error {
		var err error
		inside, err = netns.Get()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer inside.Close()
	target, err := netns.GetFromPath(Path(name))
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if !inside.Equal(target) || inside.Equal(outside) {
		t.Errorf("Do ran in %s, want the namespace %s (%s), not the caller's %s", inside, name, target, outside)
	}

	// A handle sees the namespace's links: only lo.
	h, err := Handle(name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil || len(links) != 1 || links[0].Attrs().Name != "lo" {
		t.Errorf("links in %s: %v, %v; want only lo", name, links, err)
	}

	// A sysctl lands inside, not in the caller's namespace.
	before, err := os.ReadFile("/proc/sys/net/ipv4/conf/all/send_redirects")
	if err != nil {
		t.Fatal(err)
	}
	want := "0"
	if strings.TrimSpace(string(before)) == "0" {
		want = "1"
	}
	if err := SetSysctls(name, map[string]string{"net/ipv4/conf/all/send_redirects": want}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(IPCommand(), "netns", "exec", name, "cat", "/proc/sys/net/ipv4/conf/all/send_redirects").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != want {
		t.Errorf("send_redirects in %s = %q (%v), want %s", name, out, err, want)
	}
	after, err := os.ReadFile("/proc/sys/net/ipv4/conf/all/send_redirects")
	if err != nil || string(after) != string(before) {
		t.Errorf("caller's send_redirects changed from %q to %q (%v)", before, after, err)
	}
	// A key outside net/ is refused before anything is written (this one
	// does not exist, so a broken check cannot change the machine).
	if err := SetSysctls(name, map[string]string{"kernel/skein-no-such-key": "x"}); err == nil || !strings.Contains(err.Error(), "only net/") {
		t.Errorf("SetSysctls(kernel/...) = %v, want a refusal: not per network namespace", err)
	}

	// Delete removes it; deleting again is fine.
	if err := Delete(ctx, name); err != nil {
		t.Fatal(err)
	}
	if names, _ := List(); slices.Contains(names, name) {
		t.Errorf("%s still listed after Delete", name)
	}
	if err := Delete(ctx, name); err != nil {
		t.Errorf("second Delete: %v", err)
	}
}
