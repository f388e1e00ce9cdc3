// Package depcheck is a test helper that checks what the files of a package
// import, so planners stay free of kernel, store and process access and a
// vendor library stays behind its wrapper (STYLE.md §1, §2).
package depcheck

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Kernel lists the import prefixes that touch the kernel, a process or a
// store: only *_linux.go files (thin appliers) may use them.
var Kernel = []string{
	"github.com/vishvananda/",
	"github.com/google/nftables",
	"go.etcd.io/",
	"github.com/osrg/gobgp",
	"os/exec",
	"golang.org/x/sys/unix",
	"syscall",
}

// Rule bans import path prefixes from the files it applies to.
type Rule struct {
	// Applies reports whether the rule covers the (non-test) file name;
	// nil covers every file.
	Applies func(name string) bool
	// Banned are import path prefixes.
	Banned []string
	// Why ends the error message, e.g. "kernel access belongs in *_linux.go".
	Why string
}

// NotLinux applies a rule to every file but the *_linux.go appliers.
func NotLinux(name string) bool { return !strings.HasSuffix(name, "_linux.go") }

// Check parses the non-test .go files of the current directory (the package
// under test), reports every import a rule bans, requires a package doc
// comment, and fails when fewer than minFiles files were read (a check that
// reads nothing cannot fail).
func Check(t *testing.T, minFiles int, rules ...Rule) {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	checked, doc := 0, false
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		checked++
		pf, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		if pf.Doc != nil && strings.HasPrefix(pf.Doc.Text(), "Package "+pf.Name.Name+" ") {
			doc = true
		}
		for _, imp := range pf.Imports {
			path, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rules {
				if r.Applies != nil && !r.Applies(f) {
					continue
				}
				for _, b := range r.Banned {
					if strings.HasPrefix(path, b) {
						t.Errorf("%s imports %s; %s", f, path, r.Why)
					}
				}
			}
		}
	}
	if !doc {
		t.Error("no file has a package doc comment (\"Package <name> ...\")")
	}
	if checked < minFiles {
		t.Errorf("checked %d files, want at least %d", checked, minFiles)
	}
}
