package policy

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestPureFilesImportNoKernel keeps the planner and reconciler free of kernel,
// store and process access: only *_linux.go files may talk to the kernel.
func TestPureFilesImportNoKernel(t *testing.T) {
	t.Parallel()
	banned := []string{
		"github.com/vishvananda/",
		"github.com/google/nftables",
		"go.etcd.io/",
		"github.com/osrg/gobgp",
		"os/exec",
		"golang.org/x/sys/unix",
		"syscall",
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || strings.HasSuffix(f, "_linux.go") {
			continue
		}
		checked++
		pf, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range pf.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			for _, b := range banned {
				if strings.HasPrefix(path, b) {
					t.Errorf("%s imports %s; kernel access belongs in *_linux.go", f, path)
				}
			}
		}
		if f == "doc.go" && pf.Doc == nil {
			t.Errorf("doc.go has no package doc comment")
		}
	}
	if checked < 3 {
		t.Errorf("checked %d files, want at least compile.go, reconcile.go and doc.go", checked)
	}
}
