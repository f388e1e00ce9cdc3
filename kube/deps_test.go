package kube

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestOnlySkeinKubeLinksClientGo keeps Kubernetes out of the agent and the
// plugin: nothing in Skein depends on Kubernetes but skein-kube, so
// skeind and skein-cni must not link client-go, the Kubernetes API types or
// the network-policy-api clients (go list -deps of each main package). The
// check also proves itself: skein-kube must link them.
func TestOnlySkeinKubeLinksClientGo(t *testing.T) {
	t.Parallel()
	// k8s.io/utils is not here: etcd links a btree from it.
	banned := []string{"k8s.io/client-go", "k8s.io/api/", "k8s.io/apimachinery", "sigs.k8s.io/network-policy-api", "github.com/skeinnet/skein/kube"}
	for _, tc := range []struct {
		pkg  string
		want bool // links the banned packages
	}{
		{"../cmd/skeind", false},
		{"../cni-plugin", false},
		{"../cmd/skein-kube", true},
	} {
		t.Run(filepath.Base(tc.pkg), func(t *testing.T) {
			t.Parallel()
			out, err := exec.Command(goTool(), "list", "-deps", tc.pkg).CombinedOutput()
			if err != nil {
				t.Fatalf("go list -deps %s: %v\n%s", tc.pkg, err, out)
			}
			deps := strings.Fields(string(out))
			if len(deps) < 10 {
				t.Fatalf("go list -deps %s printed %d packages, want the full graph", tc.pkg, len(deps))
			}
			var linked []string
			for _, d := range deps {
				for _, b := range banned {
					if strings.HasPrefix(d, b) {
						linked = append(linked, d)
					}
				}
			}
			switch {
			case tc.want && len(linked) == 0:
				t.Errorf("%s links none of %v: the check is looking at the wrong graph", tc.pkg, banned)
			case !tc.want && len(linked) > 0:
				t.Errorf("%s links %d Kubernetes packages, e.g. %v: only skein-kube may", tc.pkg, len(linked), linked[:min(5, len(linked))])
			}
		})
	}
}

// goTool returns the go command that built this test.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go") //nolint:staticcheck // SA1019: the test binary runs where it was built
}
