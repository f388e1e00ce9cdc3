package main

import (
	"testing"

	"github.com/skeinnet/skein/audit"
)

// TestEveryStoreIsAudited: the one store configuration the CLI builds
// carries the caller's identity, so every write method records its change.
func TestEveryStoreIsAudited(t *testing.T) {
	g := &globalFlags{EtcdUser: "alice"}
	a := g.storeConfig().Audit
	if a == nil || a.Who != "alice" || a.OSUser == "" {
		t.Fatalf("storeConfig().Audit = %+v, want alice with the OS user", a)
	}
	if a := (&globalFlags{}).storeConfig().Audit; a == nil || a.Who != audit.Anonymous {
		t.Fatalf("without an identity: Audit = %+v, want %s", a, audit.Anonymous)
	}
}
