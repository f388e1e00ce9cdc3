package bgp

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps GoBGP behind gobgp.go and gobgp_log.go (a move to
// GoBGP v4 rewrites those two files) and kernel access in *_linux.go.
func TestImports(t *testing.T) {
	t.Parallel()
	gobgpFiles := []string{"gobgp.go", "gobgp_log.go"}
	kernel := []string{"github.com/vishvananda/", "golang.org/x/sys/unix", "syscall", "os/exec", "go.etcd.io/"}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		checked++
		pf, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range pf.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(path, "github.com/osrg/gobgp") && !slices.Contains(gobgpFiles, f) {
				t.Errorf("%s imports %s; only %v may", f, path, gobgpFiles)
			}
			if !strings.HasSuffix(f, "_linux.go") && slices.ContainsFunc(kernel, func(k string) bool { return strings.HasPrefix(path, k) }) {
				t.Errorf("%s imports %s; kernel access belongs in *_linux.go", f, path)
			}
		}
		if f == "doc.go" && pf.Doc == nil {
			t.Error("doc.go has no package doc comment")
		}
	}
	if checked < 6 {
		t.Errorf("checked %d files, want the whole package", checked)
	}
}
