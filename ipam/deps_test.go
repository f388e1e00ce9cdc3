package ipam

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestDeps keeps ipam behind its BlockStore interface: no store, etcd or
// kernel packages in non-test files, and a package doc comment.
func TestDeps(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	banned := []string{
		"github.com/skeinnet/skein/store",
		"go.etcd.io/",
		"github.com/vishvananda/",
		"github.com/google/nftables",
		"os/exec",
	}
	fset := token.NewFileSet()
	doc := false
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		if af.Doc != nil && strings.HasPrefix(af.Doc.Text(), "Package ipam ") {
			doc = true
		}
		for _, imp := range af.Imports {
			path, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range banned {
				if strings.HasPrefix(path, b) {
					t.Errorf("%s imports %s", f, path)
				}
			}
		}
	}
	if !doc {
		t.Error("package ipam has no doc comment starting with \"Package ipam \"")
	}
}
