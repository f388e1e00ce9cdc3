package agent

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
)

// IdentityFile is the file under --state-dir that holds the node's secret.
const IdentityFile = api.IdentityFile

// identityPrefix marks the hash kind in api.Node.Identity.
const identityPrefix = "sha256:"

// ErrNodeNameTaken reports that the node name is registered by an agent with
// another identity: another host with the same name, or this host after its
// state dir was wiped.
var ErrNodeNameTaken = errors.New("node name held by another identity")

// identity is this agent's claim to its node name. Only the hash goes to
// etcd: reading the store must not let anyone impersonate the node.
type identity struct {
	// Hash is "sha256:<hex>" of the secret.
	Hash string
	// Path is the file the secret was read from, for messages.
	Path string
}

// loadIdentity reads the node secret from dir, creating it (0600) on first
// start; created reports whether it did.
func loadIdentity(dir string) (id identity, created bool, err error) {
	path := filepath.Join(dir, IdentityFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if err := createIdentity(path); err != nil {
			return identity{}, false, err
		}
		created = true
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return identity{}, false, fmt.Errorf("node identity %s: %w", path, err)
	}
	secret := strings.TrimSpace(string(b))
	if len(secret) < 32 {
		return identity{}, false, fmt.Errorf("node identity %s: %d characters, want at least 32 (remove the file to create a new identity; the node then needs --take-over-node)", path, len(secret))
	}
	sum := sha256.Sum256([]byte(secret))
	return identity{Hash: identityPrefix + hex.EncodeToString(sum[:]), Path: path}, created, nil
}

// createIdentity writes a new random secret at path. The secret is written
// in full to a private temporary file and linked into place, so a crash
// leaves no half-written identity and two agents on one state dir end up
// with the same one.
func createIdentity(path string) error {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return fmt.Errorf("node identity: random: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".node-identity-*") // mode 0600
	if err != nil {
		return fmt.Errorf("node identity %s: %w", path, err)
	}
	tmp := f.Name()
	// After the link, or on failure; a leftover temp file is harmless.
	defer func() { _ = os.Remove(tmp) }()
	_, err = f.WriteString(hex.EncodeToString(raw) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("node identity %s: %w", tmp, err)
	}
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("node identity %s: %w", path, err)
	}
	return nil
}

// fingerprint is the short form of an identity hash shown to people.
func fingerprint(hash string) string {
	if hash == "" {
		return "none"
	}
	h := strings.TrimPrefix(hash, identityPrefix)
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}

// claimAction is what registration does with the node record.
type claimAction int

const (
	// claimCreate: there is no record; create it.
	claimCreate claimAction = iota + 1
	// claimOwn: the record carries this agent's identity.
	claimOwn
	// claimAdopt: the record predates identities; make it this agent's.
	claimAdopt
	// claimTakeOver: another identity holds the record but is not alive and
	// the operator said --take-over-node.
	claimTakeOver
)

func (a claimAction) String() string {
	switch a {
	case claimCreate:
		return "create"
	case claimOwn:
		return "own"
	case claimAdopt:
		return "adopt"
	case claimTakeOver:
		return "take over"
	}
	return fmt.Sprintf("claimAction(%d)", int(a))
}

// claimInput is what decideClaim decides on.
type claimInput struct {
	Node string
	// Mine is this agent's identity.
	Mine identity
	// Record is the node record in etcd; nil when absent.
	Record *api.Node
	// Alive is the node's heartbeat; nil when there is none.
	Alive *store.Alive
	// TakeOver is --take-over-node.
	TakeOver bool
}

// decideClaim decides whether this agent may write the node record. A name
// held by another identity is refused while that identity heartbeats, and
// otherwise only taken over when the operator asked for it: two hosts with
// one name would each re-point the other's blocks at themselves.
func decideClaim(in claimInput) (claimAction, error) {
	// A heartbeat of our own identity is our previous run's, not a rival.
	otherAlive := in.Alive != nil && in.Alive.Identity != in.Mine.Hash
	rec := in.Record
	switch {
	case otherAlive:
		holder := in.Alive.Identity
		if rec != nil && holder == "" {
			holder = rec.Identity
		}
		return 0, claimError(in, holder, true)
	case rec == nil:
		return claimCreate, nil
	case rec.Identity == in.Mine.Hash:
		return claimOwn, nil
	case rec.Identity == "":
		return claimAdopt, nil
	case in.TakeOver:
		return claimTakeOver, nil
	}
	return 0, claimError(in, rec.Identity, false)
}

// claimError says who holds the name, whether it is alive and what to do.
func claimError(in claimInput, holder string, alive bool) error {
	var b strings.Builder
	fmt.Fprintf(&b, "node %q is held by ", in.Node)
	if holder == "" {
		b.WriteString("an agent of an earlier version (no identity)")
	} else {
		fmt.Fprintf(&b, "identity %s", fingerprint(holder))
	}
	b.WriteString(" (")
	if in.Record != nil && in.Record.UnderlayIP.IsValid() {
		fmt.Fprintf(&b, "underlay IP %s, ", in.Record.UnderlayIP)
	}
	if alive {
		b.WriteString("alive: heartbeat current")
	} else {
		b.WriteString("not alive: no heartbeat")
	}
	fmt.Fprintf(&b, "); this agent is identity %s (from %s): ", fingerprint(in.Mine.Hash), in.Mine.Path)
	switch {
	case !alive:
		fmt.Fprintf(&b, "if this is the same host with a wiped --state-dir, start with --take-over-node or run `skein node delete %s` first; otherwise give this host its own --node-name", in.Node)
	case in.TakeOver:
		b.WriteString("another host runs under this name (hosts cloned from one image share a hostname): give this host its own --node-name; --take-over-node is refused while the holder is alive")
	case holder == "":
		b.WriteString("if that is this host's previous agent, stop it (or wait ~30 s for its heartbeat to expire); otherwise give this host its own --node-name (hosts cloned from one image share a hostname)")
	default:
		b.WriteString("another host runs under this name (hosts cloned from one image share a hostname): give this host its own --node-name")
	}
	return fmt.Errorf("%w: %s", ErrNodeNameTaken, b.String())
}
