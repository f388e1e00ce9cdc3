package main

import (
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDependencies keeps the plugin thin: it is exec'd for every container,
// so it must not link the etcd client or server, GoBGP, gRPC or WireGuard, and from this
// module it may only use the api package.
func TestDependencies(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(goTool(), "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	forbidden := []string{"go.etcd.io/", "github.com/osrg/gobgp", "google.golang.org/grpc", "github.com/prometheus/", "golang.zx2c4.com/"}
	const module = "github.com/skeinnet/skein/"
	// nlretry is the one retry of interrupted netlink dumps; it links only netlink.
	allowed := map[string]bool{module + "api": true, module + "cni-plugin": true, module + "internal/nlretry": true}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps printed %d packages, want the full graph:\n%s", len(deps), out)
	}
	for _, dep := range deps {
		for _, f := range forbidden {
			if strings.HasPrefix(dep, f) {
				t.Errorf("skein-cni links %s", dep)
			}
		}
		if strings.HasPrefix(dep, module) && !allowed[dep] && !strings.HasPrefix(dep, module+"cni-plugin/internal/") {
			t.Errorf("skein-cni links %s; it may only use %sapi", dep, module)
		}
	}
}

func TestPackageDoc(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	doc := ""
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			t.Fatal(err)
		}
		if f.Doc != nil {
			doc += f.Doc.Text()
		}
	}
	if !strings.HasPrefix(doc, "Command skein-cni ") {
		t.Errorf("package doc should start with \"Command skein-cni \", got %q", doc)
	}
}
